using System.Runtime.InteropServices;

namespace Lkrun.Services.Interop;

/// <summary>
/// The few libc calls that code running on macOS as well as Linux needs and .NET does not offer, with each
/// system's constants and layouts (<see cref="LibC"/> holds Linux's alone).
/// </summary>
internal static unsafe partial class Posix
{
    private const string Library = "libc";

    private static readonly int DuplicateCloseOnExecCommand = OperatingSystem.IsMacOS() ? 67 : 1030;

    /// <summary>
    /// A new descriptor for what <paramref name="fd"/> refers to, closed on exec (fcntl F_DUPFD_CLOEXEC), so that a
    /// .NET <see cref="System.Net.Sockets.Socket"/> can own and close it while the original stays its owner's.
    /// </summary>
    public static FileDescriptor DuplicateCloseOnExec(int fd) => new(DuplicateNumberCloseOnExec(fd));

    /// <inheritdoc cref="Descriptors.DuplicateCloseOnExec"/>
    internal static int DuplicateNumberCloseOnExec(int fd)
    {
        int duplicate;
        do
        {
            duplicate = OperatingSystem.IsMacOS() && RuntimeInformation.ProcessArchitecture == Architecture.Arm64
                ? fcntl_darwin_arm64(fd, DuplicateCloseOnExecCommand, 0, 0, 0, 0, 0, 0, 0)
                : fcntl(fd, DuplicateCloseOnExecCommand, 0);
        }
        while (duplicate == -1 && Marshal.GetLastPInvokeError() == LibC.EINTR);

        return duplicate == -1 ? throw new SystemCallException("fcntl F_DUPFD_CLOEXEC", Marshal.GetLastPInvokeError()) : duplicate;
    }

    /// <summary>True when <paramref name="path"/> itself (not a link target) is a unix socket.</summary>
    public static bool IsSocketFile(string path)
    {
        if (!OperatingSystem.IsMacOS())
        {
            return LibC.IsSocketFile(path);
        }

        const ushort S_IFMT = 0xF000;
        const ushort S_IFSOCK = 0xC000;
        var status = stackalloc byte[256];
        // Safe: struct stat is 144 bytes on macOS (either layout below), well inside the 256-byte buffer.
        if (lstat(path, status) == -1)
        {
            return false;
        }

        // st_mode (16 bits) follows st_dev on arm64, whose lstat has 64-bit inodes; on x86-64 the plain lstat
        // keeps the old layout, with a 32-bit st_ino in between.
        var modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 4 : 8;
        return (*(ushort*)(status + modeOffset) & S_IFMT) == S_IFSOCK;
    }

    [LibraryImport(Library, SetLastError = true)]
    private static partial int fcntl(int fd, int command, nint argument);

    /// <summary>
    /// fcntl on Apple's arm64, where variadic arguments travel on the stack rather than in registers: six unused
    /// arguments fill the remaining argument registers so that the real one lands where fcntl reads it.
    /// </summary>
    [LibraryImport(Library, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int fcntl_darwin_arm64(int fd, int command, nint unused2, nint unused3, nint unused4, nint unused5, nint unused6, nint unused7, nint argument);

    [LibraryImport(Library, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lstat(string path, byte* status);
}
