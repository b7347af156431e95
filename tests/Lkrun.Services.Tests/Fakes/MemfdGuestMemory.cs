using Lkrun.Services.Interop;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Tests.Fakes;

/// <summary>
/// Guest RAM as a front-end shares it: a memfd, one region from guest address 0, front-end addresses offset as in
/// <see cref="FakeGuestMemory"/>. The test reaches it through its own mapping.
/// </summary>
internal sealed unsafe class MemfdGuestMemory : IGuestBytes, IDisposable
{
    private readonly MemoryMapping _mapping;

    public MemfdGuestMemory(int size)
    {
        Size = size;
        Descriptor = new FileDescriptor(LibC.Check(LibC.memfd_create("guest-ram", LibC.MFD_CLOEXEC), "memfd_create"));
        LibC.Check(LibC.ftruncate(Descriptor.Number, size), "ftruncate");
        _mapping = MemoryMapping.MapShared(Descriptor.Number, (nuint)size);
    }

    public int Size { get; }

    public FileDescriptor Descriptor { get; }

    public MemoryRegionDescription Region => new(0, (ulong)Size, FakeGuestMemory.UserOffset, 0);

    public Span<byte> Bytes(ulong guestAddress, int length) =>
        guestAddress + (ulong)length <= (ulong)Size
            ? new Span<byte>((void*)(_mapping.Address + (nint)guestAddress), length)
            : throw new ArgumentOutOfRangeException(nameof(guestAddress));

    /// <summary>A new descriptor for the same memory, as a front-end sends with each SET_MEM_TABLE.</summary>
    public FileDescriptor Duplicate()
    {
        const int F_DUPFD_CLOEXEC = 1030;
        return new FileDescriptor(LibC.Check(LibC.fcntl(Descriptor.Number, F_DUPFD_CLOEXEC, 0), "fcntl F_DUPFD_CLOEXEC"));
    }

    public void Dispose()
    {
        _mapping.Dispose();
        Descriptor.Dispose();
    }
}
