using System.Net.Sockets;

namespace Lkrun.Services.Interop;

/// <summary>Connected pairs of unix sockets, close-on-exec, on Linux and macOS alike.</summary>
internal static unsafe class SocketPair
{
    public const int Stream = 1;
    public const int Datagram = 2;

    private static readonly bool IsMacOS = OperatingSystem.IsMacOS();

    /// <summary>ioctl FIOCLEX (close-on-exec, without the variadic fcntl that macOS on arm64 passes on the stack).</summary>
    private static readonly nuint FIOCLEX = IsMacOS ? 0x20006601u : 0x5451u;

    /// <summary>A connected pair of AF_UNIX sockets of <paramref name="type"/> (<see cref="Stream"/> or <see cref="Datagram"/>).</summary>
    public static (SafeSocketHandle First, SafeSocketHandle Second) Create(int type)
    {
        var fds = stackalloc int[2];
        // SOCK_CLOEXEC exists on Linux only; macOS gets FIOCLEX right after.
        LibC.Check(LibC.socketpair(LibC.AF_UNIX, type | (IsMacOS ? 0 : LibC.SOCK_CLOEXEC), 0, fds), "socketpair");
        var pair = (new SafeSocketHandle(fds[0], ownsHandle: true), new SafeSocketHandle(fds[1], ownsHandle: true));
        if (IsMacOS && (LibC.ioctl(fds[0], FIOCLEX) == -1 || LibC.ioctl(fds[1], FIOCLEX) == -1))
        {
            var failure = LibC.Failure("ioctl FIOCLEX");
            pair.Item1.Dispose();
            pair.Item2.Dispose();
            throw failure;
        }
        return pair;
    }
}
