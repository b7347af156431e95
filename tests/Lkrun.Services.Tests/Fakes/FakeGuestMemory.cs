using Lkrun.Services.Interop;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Tests.Fakes;

/// <summary>
/// Guest RAM for tests: each region is anonymous memory whose end touches an inaccessible guard page (and so does
/// its start), so a read or write outside the regions crashes the test run instead of passing silently. Front-end
/// (user) addresses are guest addresses plus <see cref="UserOffset"/>.
/// </summary>
internal sealed unsafe class FakeGuestMemory : IGuestBytes, IDisposable
{
    public const ulong UserOffset = 0x7f00_0000_0000;
    public const int PageSize = 4096;

    private readonly List<MemoryMapping> _mappings = [];

    public FakeGuestMemory(params (ulong GuestAddress, int Size)[] regions)
    {
        var list = new List<GuestMemoryRegion>();
        foreach (var (guestAddress, size) in regions)
        {
            var pages = (size + PageSize - 1) / PageSize;
            var mapping = MemoryMapping.MapAnonymous((nuint)((pages + 2) * PageSize), accessible: false);
            _mappings.Add(mapping);
            LibC.Check(LibC.mprotect((void*)(mapping.Address + PageSize), (nuint)(pages * PageSize), LibC.PROT_READ | LibC.PROT_WRITE), "mprotect");
            // The region ends exactly at the trailing guard page.
            var host = mapping.Address + PageSize + (pages * PageSize - size);
            list.Add(new GuestMemoryRegion(guestAddress, (ulong)size, guestAddress + UserOffset, host));
        }

        Memory = new GuestMemory(list);
    }

    public GuestMemory Memory { get; }

    public static ulong User(ulong guestAddress) => guestAddress + UserOffset;

    public Span<byte> Bytes(ulong guestAddress, int length) =>
        Memory.TryTranslate(guestAddress, (ulong)length, out var host)
            ? new Span<byte>((void*)host, length)
            : throw new ArgumentOutOfRangeException(nameof(guestAddress), $"0x{guestAddress:x}+{length} is not guest memory");

    public void Dispose()
    {
        foreach (var mapping in _mappings)
        {
            mapping.Dispose();
        }
    }
}
