using System.Net.Sockets;

namespace Lkrun.Services.Interop;

/// <summary>
/// AF_UNIX SOCK_DGRAM calls for the network's datagram link, written to run on Linux and macOS alike: no
/// Linux-only calls or flags, and the errno values that differ between the two chosen at run time. Sends and
/// receives return -errno instead of throwing, since "would block" ends every busy turn. Binding, connecting and
/// buffer sizes go through .NET's <see cref="Socket"/>, which is portable already.
/// </summary>
internal static unsafe class UnixDatagram
{
    private static readonly bool IsMacOS = OperatingSystem.IsMacOS();

    public static readonly int EAGAIN = IsMacOS ? 35 : 11;
    public static readonly int ENOBUFS = IsMacOS ? 55 : 105;
    public static readonly int EMSGSIZE = IsMacOS ? 40 : 90;

    private static readonly int SOL_SOCKET = IsMacOS ? 0xffff : 1;
    private static readonly int SO_SNDBUF = IsMacOS ? 0x1001 : 7;
    private static readonly int SO_RCVBUF = IsMacOS ? 0x1002 : 8;

    /// <summary>Room for any sockaddr_un: 110 bytes on Linux, 106 on macOS.</summary>
    public const int AddressBufferLength = 128;

    /// <summary>
    /// Where sun_path starts in a sockaddr_un: after sa_family_t on Linux, after sun_len and sun_family on macOS,
    /// two bytes either way.
    /// </summary>
    private const int PathOffset = 2;

    /// <summary>
    /// A connected pair of datagram sockets, both close-on-exec and both with the given buffer sizes (which matter
    /// on macOS above all, where a datagram may not be longer than its sender's send buffer, 2 KiB by default).
    /// </summary>
    public static (SafeSocketHandle First, SafeSocketHandle Second) Pair(int sendBuffer, int receiveBuffer)
    {
        var pair = SocketPair.Create(SocketPair.Datagram);
        try
        {
            foreach (var end in new[] { pair.First, pair.Second })
            {
                var fd = (int)end.DangerousGetHandle();
                SetOption(fd, SO_SNDBUF, sendBuffer, "setsockopt SO_SNDBUF");
                SetOption(fd, SO_RCVBUF, receiveBuffer, "setsockopt SO_RCVBUF");
            }
            return pair;
        }
        catch
        {
            pair.First.Dispose();
            pair.Second.Dispose();
            throw;
        }
    }

    private static void SetOption(int fd, int option, int value, string operation) =>
        // Safe: passes a local int with its own size.
        LibC.Check(LibC.setsockopt(fd, SOL_SOCKET, option, &value, sizeof(int)), operation);

    /// <summary>Sends one datagram on a connected nonblocking socket; the byte count or -errno.</summary>
    public static int Send(int fd, ReadOnlySpan<byte> datagram)
    {
        fixed (byte* bytes = datagram)
        {
            while (true)
            {
                // Safe: the span is pinned for the call and the length is its own. Without MSG_NOSIGNAL (Linux
                // only): a datagram socket raises SIGPIPE only after its own shutdown, which lkrun never does.
                var sent = LibC.send(fd, bytes, (nuint)datagram.Length, 0);
                if (sent >= 0)
                {
                    return (int)sent;
                }
                var errno = LibC.LastError;
                if (errno != LibC.EINTR)
                {
                    return -errno;
                }
            }
        }
    }

    /// <summary>
    /// Receives one datagram from a nonblocking socket into <paramref name="buffer"/> (a longer one is cut to the
    /// buffer's length) and its sender's address into <paramref name="source"/>; the byte count or -errno.
    /// </summary>
    public static int Receive(int fd, Span<byte> buffer, Span<byte> source, out int sourceLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(source.Length, AddressBufferLength);
        fixed (byte* bytes = buffer)
        fixed (byte* address = source)
        {
            while (true)
            {
                var length = (uint)source.Length;
                // Safe: both spans are pinned for the call and passed with their own lengths.
                var received = LibC.recvfrom(fd, bytes, (nuint)buffer.Length, 0, address, &length);
                if (received >= 0)
                {
                    sourceLength = (int)Math.Min(length, (uint)source.Length);
                    return (int)received;
                }
                var errno = LibC.LastError;
                if (errno != LibC.EINTR)
                {
                    sourceLength = 0;
                    return -errno;
                }
            }
        }
    }

    /// <summary>
    /// Whether a sender's address (from <see cref="Receive"/>) is the socket bound at <paramref name="path"/>
    /// (its UTF-8 bytes). An unbound sender has no path and never matches.
    /// </summary>
    public static bool IsFrom(ReadOnlySpan<byte> source, ReadOnlySpan<byte> path)
    {
        if (source.Length <= PathOffset)
        {
            return false;
        }
        var sourcePath = source[PathOffset..];
        var end = sourcePath.IndexOf((byte)0);
        return (end < 0 ? sourcePath : sourcePath[..end]).SequenceEqual(path);
    }
}
