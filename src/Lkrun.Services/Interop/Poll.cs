using System.Runtime.InteropServices;

namespace Lkrun.Services.Interop;

/// <summary>poll(2), and an eventfd to wake a thread sleeping in it.</summary>
internal static unsafe partial class Poll
{
    public const short In = 0x001;
    public const short Pri = 0x002;
    public const short Out = 0x004;
    public const short Err = 0x008;
    public const short Hup = 0x010;
    public const short Nval = 0x020;

    private const int Interrupted = 4;
    private const int EventFdNonBlocking = 0x800;
    private const int EventFdCloseOnExec = 0x80000;

    /// <summary>Waits for events on <paramref name="fds"/>; -1 for an interrupted wait, which counts as no events.</summary>
    public static int Wait(Span<PollFd> fds, int timeoutMilliseconds)
    {
        fixed (PollFd* pointer = fds)
        {
            var ready = poll(pointer, (nuint)fds.Length, timeoutMilliseconds);
            if (ready < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                return errno == Interrupted ? -1 : throw new IOException($"poll failed: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
            return ready;
        }
    }

    /// <summary>A non-blocking eventfd; <see cref="Signal"/> makes it readable until <see cref="Drain"/>.</summary>
    public static int CreateEvent()
    {
        var fd = eventfd(0, EventFdNonBlocking | EventFdCloseOnExec);
        return fd >= 0 ? fd : throw new IOException($"eventfd failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
    }

    public static void Signal(int eventFd)
    {
        ulong one = 1;
        // A full counter (2^64 - 2 signals unread) is the only failure, and leaves the fd readable anyway.
        _ = write(eventFd, &one, sizeof(ulong));
    }

    public static void Drain(int eventFd)
    {
        ulong value;
        _ = read(eventFd, &value, sizeof(ulong));
    }

    public static void Close(int fd) => _ = close(fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int poll(PollFd* fds, nuint count, int timeout);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int eventfd(uint initial, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint write(int fd, void* buffer, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint read(int fd, void* buffer, nuint count);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}

/// <summary>struct pollfd.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PollFd
{
    public int Fd;
    public short Events;
    public short REvents;
}
