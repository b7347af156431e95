using System.Runtime.InteropServices;

namespace Lkrun.Services.Interop;

/// <summary>
/// The libc calls the host services need that .NET does not expose: fd passing, raw nonblocking socket I/O,
/// mmap, eventfd, epoll and poll. Constants and struct layouts are those of Linux on x86-64 and arm64 (identical for
/// everything here except <see cref="EpollEvent"/>, see there). The NAT network's calls (poll, send, recvfrom,
/// socketpair, ioctl) also run on macOS: <see cref="PollSet"/> and <see cref="UnixDatagram"/> use only what the two
/// systems share and choose the values that differ at run time.
/// </summary>
internal static unsafe partial class LibC
{
    private const string Library = "libc";

    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOCK_NONBLOCK = 0x800;
    public const int SOCK_CLOEXEC = 0x80000;

    public const int SOL_SOCKET = 1;
    public const int SCM_RIGHTS = 1;
    public const int SO_RCVTIMEO = 20;
    public const int SO_SNDTIMEO = 21;

    public const int MSG_CTRUNC = 0x8;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;

    public const int SHUT_WR = 1;

    public const int PROT_NONE = 0;
    public const int PROT_READ = 1;
    public const int PROT_WRITE = 2;
    public const int MAP_SHARED = 0x1;
    public const int MAP_PRIVATE = 0x2;
    public const int MAP_ANONYMOUS = 0x20;
    public const int MAP_NORESERVE = 0x4000;

    /// <summary>glibc's mallopt parameter for the size from which malloc serves a block from a mapping of its own.</summary>
    public const int M_MMAP_THRESHOLD = -3;

    public const int EFD_CLOEXEC = 0x80000;
    public const int EFD_NONBLOCK = 0x800;
    public const uint MFD_CLOEXEC = 1;

    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EPOLL_CTL_ADD = 1;
    public const int EPOLL_CTL_DEL = 2;
    public const int EPOLL_CTL_MOD = 3;

    public const int F_SETFD = 2;
    public const int F_GETFL = 3;
    public const int F_SETFL = 4;
    public const int O_NONBLOCK = 0x800;

    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int ECONNREFUSED = 111;

    [StructLayout(LayoutKind.Sequential)]
    public struct Iovec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public Iovec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct ControlMessageHeader
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    public const int SunPathLength = 108;

    [StructLayout(LayoutKind.Sequential)]
    public struct SockaddrUn
    {
        public ushort Family;
        public fixed byte Path[SunPathLength];
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Timeval
    {
        public long Seconds;
        public long Microseconds;
    }

    /// <summary>
    /// <c>struct epoll_event</c> as the arm64 (and every other non-x86-64) kernel lays it out. On x86-64 the kernel
    /// packs it to 12 bytes; <see cref="EventLoop"/> picks the layout at run time.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct PackedEpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [LibraryImport(Library, SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint read(int fd, void* buffer, nint count);

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint write(int fd, void* buffer, nint count);

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint recvmsg(int fd, MessageHeader* message, int flags);

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint sendmsg(int fd, MessageHeader* message, int flags);

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint send(int fd, void* buffer, nuint length, int flags);

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint recvfrom(int fd, void* buffer, nuint length, int flags, void* address, uint* addressLength);

    /// <summary>ioctl without an argument (variadic in C; calls with no variadic part are safe on every ABI).</summary>
    [LibraryImport(Library, SetLastError = true)]
    public static partial int ioctl(int fd, nuint request);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int socket(int domain, int type, int protocol);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int socketpair(int domain, int type, int protocol, int* fds);

    [LibraryImport(Library)]
    public static partial int mallopt(int parameter, int value);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int bind(int fd, SockaddrUn* address, uint length);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int connect(int fd, SockaddrUn* address, uint length);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int listen(int fd, int backlog);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int accept4(int fd, void* address, uint* length, int flags);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int shutdown(int fd, int how);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int setsockopt(int fd, int level, int name, void* value, uint length);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int fcntl(int fd, int command, int argument);

    [LibraryImport(Library, SetLastError = true)]
    public static partial void* mmap(void* address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int mprotect(void* address, nuint length, int protection);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int munmap(void* address, nuint length);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int eventfd(uint initialValue, int flags);

    [LibraryImport(Library, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int memfd_create(string name, uint flags);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int ftruncate(int fd, long length);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int epoll_create1(int flags);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int epoll_ctl(int epfd, int operation, int fd, void* ev);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int epoll_wait(int epfd, void* events, int maxEvents, int timeoutMilliseconds);

    public const short POLLIN = 0x001;
    public const short POLLPRI = 0x002;
    public const short POLLOUT = 0x004;
    public const short POLLERR = 0x008;
    public const short POLLHUP = 0x010;
    public const short POLLNVAL = 0x020;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short REvents;
    }

    [LibraryImport(Library, SetLastError = true)]
    public static partial int poll(PollFd* fds, nuint count, int timeoutMilliseconds);

    [LibraryImport(Library, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int chmod(string path, uint mode);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int setsid();

    [LibraryImport(Library, SetLastError = true)]
    public static partial int dup2(int oldFd, int newFd);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int kill(int pid, int signal);

    [LibraryImport(Library, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lstat(string path, byte* status);

    /// <summary>True when <paramref name="path"/> itself (not a link target) is a unix socket.</summary>
    public static bool IsSocketFile(string path)
    {
        const uint S_IFMT = 0xF000;
        const uint S_IFSOCK = 0xC000;
        var status = stackalloc byte[256];
        // Safe: struct stat is 144 bytes on x86-64 and 128 on arm64, well inside the 256-byte buffer.
        if (lstat(path, status) == -1)
        {
            return false;
        }

        // st_mode follows st_dev, st_ino and (on x86-64 only) st_nlink.
        var modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        return (*(uint*)(status + modeOffset) & S_IFMT) == S_IFSOCK;
    }

    public const uint S_IFMT = 0xF000;
    public const uint S_IFREG = 0x8000;
    public const uint S_IFBLK = 0x6000;

    [LibraryImport(Library, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int stat(string path, byte* status);

    /// <summary>The file type bits (<see cref="S_IFMT"/>) of what <paramref name="path"/> leads to; null when it cannot be read.</summary>
    public static uint? FileType(string path)
    {
        var status = stackalloc byte[256];
        // Safe: struct stat is 144 bytes on x86-64 and 128 on arm64, well inside the 256-byte buffer.
        if (stat(path, status) == -1)
        {
            return null;
        }
        var modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        return *(uint*)(status + modeOffset) & S_IFMT;
    }

    public const int R_OK = 4;
    public const int W_OK = 2;

    [LibraryImport(Library, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int access(string path, int mode);

    /// <summary>Why this process may not read and write <paramref name="path"/> (errno's text), or null when it may.</summary>
    public static string? WhyNotReadWrite(string path) =>
        access(path, R_OK | W_OK) == 0 ? null : Marshal.GetPInvokeErrorMessage(LastError);

    public static readonly void* MapFailed = (void*)-1;

    public static int LastError => Marshal.GetLastPInvokeError();

    /// <summary>The failed call's errno as a typed exception whose message names what was being done.</summary>
    public static SystemCallException Failure(string operation) => new(operation, LastError);

    /// <summary>Throws for a -1 result; returns the result otherwise.</summary>
    public static int Check(int result, string operation) => result == -1 ? throw Failure(operation) : result;
}
