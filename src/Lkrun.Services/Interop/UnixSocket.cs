using System.Net.Sockets;
using System.Text;

namespace Lkrun.Services.Interop;

/// <summary>
/// AF_UNIX stream sockets as raw descriptors: listening with a file mode, nonblocking accept and connect, and
/// messages that carry file descriptors (SCM_RIGHTS).
/// </summary>
internal static unsafe class UnixSocket
{
    /// <summary>At most this many descriptors travel with one message (vhost-user sends at most 8).</summary>
    public const int MaxPassedDescriptors = 8;

    /// <summary>File mode 0600: only the owner may connect.</summary>
    public const uint OwnerOnlyMode = 0x180;

    private static readonly int ControlMessageHeaderSize = sizeof(LibC.ControlMessageHeader);

    /// <summary>
    /// Binds and listens on <paramref name="path"/> with the given file mode. A socket file that nobody listens on
    /// any more is replaced; one that is still served is reported as in use.
    /// </summary>
    public static FileDescriptor Listen(string path, uint mode, int backlog = 128)
    {
        var address = Address(path);
        if (LibC.IsSocketFile(path))
        {
            if (!IsStaleSocket(path))
            {
                throw new IOException($"{path}: already in use");
            }

            File.Delete(path);
        }
        else if (File.Exists(path) || Directory.Exists(path))
        {
            throw new IOException($"{path}: exists and is not a socket");
        }

        var fd = new FileDescriptor(LibC.Check(
            LibC.socket(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_NONBLOCK | LibC.SOCK_CLOEXEC, 0), "socket"));
        try
        {
            // Safe: address is a local sockaddr_un passed with its own size.
            if (LibC.bind(fd.Number, &address, (uint)sizeof(LibC.SockaddrUn)) == -1)
            {
                throw LibC.Failure($"bind {path}");
            }

            // The mode is set before listen(), so nobody can connect while the file still has the umask's mode.
            LibC.Check(LibC.chmod(path, mode), $"chmod {path}");
            LibC.Check(LibC.listen(fd.Number, backlog), $"listen {path}");
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>A nonblocking connection accepted from <paramref name="listener"/>, or null when none is waiting.</summary>
    public static FileDescriptor? Accept(int listener)
    {
        while (true)
        {
            var fd = LibC.accept4(listener, null, null, LibC.SOCK_NONBLOCK | LibC.SOCK_CLOEXEC);
            if (fd >= 0)
            {
                return new FileDescriptor(fd);
            }

            var errno = LibC.LastError;
            if (errno == LibC.EINTR)
            {
                continue;
            }

            // EAGAIN is the normal end; a connection that was reset while queued is skipped the same way.
            return null;
        }
    }

    /// <summary>
    /// Connects a nonblocking socket to <paramref name="path"/>; returns 0 and the socket, or the errno
    /// (ENOENT or ECONNREFUSED when nobody listens, EAGAIN when the listener's backlog is full).
    /// </summary>
    public static int TryConnect(string path, out FileDescriptor? connected)
    {
        connected = null;
        var address = Address(path);
        var fd = LibC.socket(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_NONBLOCK | LibC.SOCK_CLOEXEC, 0);
        if (fd == -1)
        {
            return LibC.LastError;
        }

        var owned = new FileDescriptor(fd);
        // Safe: address is a local sockaddr_un passed with its own size.
        if (LibC.connect(fd, &address, (uint)sizeof(LibC.SockaddrUn)) == -1)
        {
            var errno = LibC.LastError;
            owned.Dispose();
            return errno;
        }

        connected = owned;
        return 0;
    }

    /// <summary>A connected pair of stream sockets (both nonblocking when asked).</summary>
    public static (FileDescriptor First, FileDescriptor Second) Pair(bool nonBlocking)
    {
        var type = LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC | (nonBlocking ? LibC.SOCK_NONBLOCK : 0);
        var fds = stackalloc int[2];
        LibC.Check(LibC.socketpair(LibC.AF_UNIX, type, 0, fds), "socketpair");
        return (new FileDescriptor(fds[0]), new FileDescriptor(fds[1]));
    }

    /// <summary>
    /// The connection a .NET <paramref name="socket"/> holds, as a nonblocking descriptor of our own for an epoll
    /// loop. The socket is disposed; it must have no operation in progress, so that closing it closes only its
    /// descriptor.
    /// </summary>
    public static FileDescriptor TakeOver(Socket socket)
    {
        FileDescriptor fd;
        try
        {
            fd = Posix.DuplicateCloseOnExec((int)socket.SafeHandle.DangerousGetHandle());
        }
        finally
        {
            socket.Dispose();
        }

        try
        {
            SetNonBlocking(fd.Number, true);
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    public static void SetNonBlocking(int fd, bool nonBlocking)
    {
        var flags = LibC.Check(LibC.fcntl(fd, LibC.F_GETFL, 0), "fcntl F_GETFL");
        flags = nonBlocking ? flags | LibC.O_NONBLOCK : flags & ~LibC.O_NONBLOCK;
        LibC.Check(LibC.fcntl(fd, LibC.F_SETFL, flags), "fcntl F_SETFL");
    }

    /// <summary>Bounds how long a blocking receive or send on <paramref name="fd"/> may wait.</summary>
    public static void SetTimeouts(int fd, TimeSpan timeout)
    {
        var value = new LibC.Timeval
        {
            Seconds = (long)timeout.TotalSeconds,
            Microseconds = timeout.Microseconds + 1000L * timeout.Milliseconds,
        };
        // Safe: passes a local timeval with its own size.
        LibC.Check(LibC.setsockopt(fd, LibC.SOL_SOCKET, LibC.SO_RCVTIMEO, &value, (uint)sizeof(LibC.Timeval)), "setsockopt SO_RCVTIMEO");
        LibC.Check(LibC.setsockopt(fd, LibC.SOL_SOCKET, LibC.SO_SNDTIMEO, &value, (uint)sizeof(LibC.Timeval)), "setsockopt SO_SNDTIMEO");
    }

    /// <summary>
    /// Receives up to <paramref name="buffer"/>.Length bytes and the descriptors that came with them. Returns the
    /// byte count (0 at end of stream) or -errno. Descriptors beyond <paramref name="descriptors"/>' room are
    /// closed and reported as an error (-EMSGSIZE).
    /// </summary>
    public static int Receive(int fd, Span<byte> buffer, Span<int> descriptors, out int descriptorCount)
    {
        descriptorCount = 0;
        const int controlSize = 16 + MaxPassedDescriptors * sizeof(int);
        var control = stackalloc byte[controlSize];
        fixed (byte* data = buffer)
        {
            var iov = new LibC.Iovec { Base = data, Length = (nuint)buffer.Length };
            var message = new LibC.MessageHeader
            {
                Iov = &iov,
                IovLength = 1,
                Control = control,
                ControlLength = controlSize,
            };

            nint received;
            do
            {
                // Safe: the iovec covers the pinned buffer and the control area is a stack buffer of controlSize.
                received = LibC.recvmsg(fd, &message, LibC.MSG_CMSG_CLOEXEC);
            }
            while (received == -1 && LibC.LastError == LibC.EINTR);

            if (received == -1)
            {
                return -LibC.LastError;
            }

            var truncated = (message.Flags & LibC.MSG_CTRUNC) != 0;
            var overflow = false;
            var offset = 0;
            while (offset + ControlMessageHeaderSize <= (int)message.ControlLength)
            {
                var header = (LibC.ControlMessageHeader*)(control + offset);
                var length = (int)header->Length;
                if (length < ControlMessageHeaderSize || offset + length > (int)message.ControlLength)
                {
                    break;
                }

                if (header->Level == LibC.SOL_SOCKET && header->Type == LibC.SCM_RIGHTS)
                {
                    var count = (length - ControlMessageHeaderSize) / sizeof(int);
                    var passed = (int*)(control + offset + ControlMessageHeaderSize);
                    for (var i = 0; i < count; i++)
                    {
                        if (descriptorCount < descriptors.Length)
                        {
                            descriptors[descriptorCount++] = passed[i];
                        }
                        else
                        {
                            LibC.close(passed[i]);
                            overflow = true;
                        }
                    }
                }

                offset += (length + 7) & ~7;
            }

            if (truncated || overflow)
            {
                foreach (var passed in descriptors[..descriptorCount])
                {
                    LibC.close(passed);
                }

                descriptorCount = 0;
                const int EMSGSIZE = 90;
                return -EMSGSIZE;
            }

            return (int)received;
        }
    }

    /// <summary>Sends all of <paramref name="data"/> on a blocking socket, the descriptors with the first byte; returns 0 or -errno.</summary>
    public static int SendAll(int fd, ReadOnlySpan<byte> data, ReadOnlySpan<int> descriptors)
    {
        if (descriptors.Length > MaxPassedDescriptors)
        {
            throw new ArgumentException($"at most {MaxPassedDescriptors} descriptors per message", nameof(descriptors));
        }

        var controlSize = descriptors.IsEmpty ? 0 : ControlMessageHeaderSize + ((descriptors.Length * sizeof(int) + 7) & ~7);
        var control = stackalloc byte[Math.Max(controlSize, 1)];
        if (controlSize > 0)
        {
            var header = (LibC.ControlMessageHeader*)control;
            header->Length = (nuint)(ControlMessageHeaderSize + descriptors.Length * sizeof(int));
            header->Level = LibC.SOL_SOCKET;
            header->Type = LibC.SCM_RIGHTS;
            descriptors.CopyTo(new Span<int>(control + ControlMessageHeaderSize, descriptors.Length));
        }

        fixed (byte* start = data)
        {
            var sent = 0;
            while (sent < data.Length)
            {
                var iov = new LibC.Iovec { Base = start + sent, Length = (nuint)(data.Length - sent) };
                var message = new LibC.MessageHeader { Iov = &iov, IovLength = 1 };
                if (sent == 0 && controlSize > 0)
                {
                    message.Control = control;
                    message.ControlLength = (nuint)controlSize;
                }

                // Safe: the iovec covers the pinned remainder of data; the control area is a stack buffer of controlSize.
                var result = LibC.sendmsg(fd, &message, LibC.MSG_NOSIGNAL);
                if (result == -1)
                {
                    var errno = LibC.LastError;
                    if (errno == LibC.EINTR)
                    {
                        continue;
                    }

                    return -errno;
                }

                sent += (int)result;
            }

            return 0;
        }
    }

    /// <summary>Nonblocking gather-send; returns the bytes sent or -errno (-EAGAIN when the socket is full).</summary>
    public static nint SendVectors(int fd, ReadOnlySpan<LibC.Iovec> iovecs)
    {
        fixed (LibC.Iovec* vectors = iovecs)
        {
            var message = new LibC.MessageHeader { Iov = vectors, IovLength = (nuint)iovecs.Length };
            while (true)
            {
                // Safe: the iovecs are pinned and each describes memory its producer guarantees is mapped.
                var result = LibC.sendmsg(fd, &message, LibC.MSG_NOSIGNAL | LibC.MSG_DONTWAIT);
                if (result >= 0)
                {
                    return result;
                }

                var errno = LibC.LastError;
                if (errno != LibC.EINTR)
                {
                    return -errno;
                }
            }
        }
    }

    /// <summary>Nonblocking scatter-receive; returns the bytes received, 0 at end of stream, or -errno.</summary>
    public static nint ReceiveVectors(int fd, ReadOnlySpan<LibC.Iovec> iovecs)
    {
        fixed (LibC.Iovec* vectors = iovecs)
        {
            var message = new LibC.MessageHeader { Iov = vectors, IovLength = (nuint)iovecs.Length };
            while (true)
            {
                // Safe: the iovecs are pinned and each describes writable memory its producer guarantees is mapped.
                var result = LibC.recvmsg(fd, &message, LibC.MSG_DONTWAIT);
                if (result >= 0)
                {
                    return result;
                }

                var errno = LibC.LastError;
                if (errno != LibC.EINTR)
                {
                    return -errno;
                }
            }
        }
    }

    private static LibC.SockaddrUn Address(string path)
    {
        var address = new LibC.SockaddrUn { Family = LibC.AF_UNIX };
        var byteCount = Encoding.UTF8.GetByteCount(path);
        if (byteCount >= LibC.SunPathLength)
        {
            throw new IOException($"{path}: socket path too long ({byteCount} bytes, at most {LibC.SunPathLength - 1})");
        }

        // Safe: byteCount < SunPathLength, so the path and its terminating zero fit the fixed buffer.
        Encoding.UTF8.GetBytes(path, new Span<byte>(address.Path, LibC.SunPathLength));
        return address;
    }

    /// <summary>True when <paramref name="path"/> is a socket file that refuses connections (its server is gone).</summary>
    private static bool IsStaleSocket(string path)
    {
        var errno = TryConnect(path, out var probe);
        probe?.Dispose();
        return errno == LibC.ECONNREFUSED;
    }
}
