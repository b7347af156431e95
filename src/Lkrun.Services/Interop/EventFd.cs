namespace Lkrun.Services.Interop;

/// <summary>eventfd notifications: the kick and call signals of virtqueues, and waking an <see cref="EventLoop"/>.</summary>
internal static unsafe class EventFd
{
    public static FileDescriptor Create() =>
        new(LibC.Check(LibC.eventfd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK), "eventfd"));

    /// <summary>Adds one to the counter; the reader wakes. A full counter (2^64 - 2 pending) already means "signalled".</summary>
    public static void Signal(int fd)
    {
        ulong one = 1;
        // Safe: writes 8 bytes from a local.
        LibC.write(fd, &one, sizeof(ulong));
    }

    /// <summary>Reads and clears the counter; false when it was zero (a spurious wake-up).</summary>
    public static bool Drain(int fd)
    {
        ulong value;
        // Safe: reads at most 8 bytes into a local.
        return LibC.read(fd, &value, sizeof(ulong)) == sizeof(ulong);
    }
}
