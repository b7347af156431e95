namespace Lkrun.Services.Interop;

/// <summary>An mmap'd range, unmapped once on dispose.</summary>
internal sealed unsafe class MemoryMapping : IDisposable
{
    private nint _address;

    private MemoryMapping(nint address, nuint length)
    {
        _address = address;
        Length = length;
    }

    public nint Address => _address;

    public nuint Length { get; }

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="fd"/> from offset 0, shared and writable.</summary>
    public static MemoryMapping MapShared(int fd, nuint length)
    {
        var address = LibC.mmap(null, length, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED | LibC.MAP_NORESERVE, fd, 0);
        if (address == LibC.MapFailed)
        {
            throw LibC.Failure($"mmap {length} bytes");
        }

        return new MemoryMapping((nint)address, length);
    }

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="fd"/> from offset 0, private and read-only.</summary>
    public static MemoryMapping MapReadOnly(int fd, nuint length)
    {
        var address = LibC.mmap(null, length, LibC.PROT_READ, LibC.MAP_PRIVATE, fd, 0);
        if (address == LibC.MapFailed)
        {
            throw LibC.Failure($"mmap {length} bytes read-only");
        }

        return new MemoryMapping((nint)address, length);
    }

    /// <summary>Anonymous private memory, optionally inaccessible (PROT_NONE) so that touching it faults.</summary>
    public static MemoryMapping MapAnonymous(nuint length, bool accessible = true)
    {
        var protection = accessible ? LibC.PROT_READ | LibC.PROT_WRITE : LibC.PROT_NONE;
        var address = LibC.mmap(null, length, protection, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS | LibC.MAP_NORESERVE, -1, 0);
        if (address == LibC.MapFailed)
        {
            throw LibC.Failure($"mmap {length} anonymous bytes");
        }

        return new MemoryMapping((nint)address, length);
    }

    public void Dispose()
    {
        var address = Interlocked.Exchange(ref _address, 0);
        if (address != 0)
        {
            LibC.munmap((void*)address, Length);
        }
    }
}
