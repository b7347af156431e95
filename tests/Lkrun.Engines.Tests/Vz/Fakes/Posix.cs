using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Lkrun.Engines.Tests.Vz.Fakes;

/// <summary>Socket pairs standing in for the framework's descriptors, and a way to tell whether a descriptor was closed.</summary>
internal static unsafe partial class Posix
{
    private const int AF_UNIX = 1;
    private const int SOCK_STREAM = 1;
    private const int SOCK_DGRAM = 2;
    private const int SOCK_CLOEXEC = 0x80000;

    public static (int First, int Second) StreamPair() => Pair(SOCK_STREAM);

    public static (int First, int Second) DatagramPair() => Pair(SOCK_DGRAM);

    public static Socket Adopt(int descriptor) => new(new SafeSocketHandle(descriptor, ownsHandle: true));

    public static void Close(int descriptor) => close(descriptor);

    /// <summary>What <paramref name="descriptor"/> refers to now (<c>socket:[inode]</c>), or null when it is closed.</summary>
    public static string? Identity(int descriptor) => new FileInfo($"/proc/self/fd/{descriptor}").LinkTarget;

    private static (int, int) Pair(int type)
    {
        var fds = stackalloc int[2];
        // Safe: fds has room for the two descriptors socketpair writes.
        if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0)
        {
            throw new IOException($"socketpair: {Marshal.GetLastPInvokeError()}");
        }
        return (fds[0], fds[1]);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int socketpair(int domain, int type, int protocol, int* fds);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}
