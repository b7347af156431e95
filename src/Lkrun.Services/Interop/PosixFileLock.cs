using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Lkrun.Services.Interop;

/// <summary>Advisory whole-file locks (flock), released by the kernel when the holder dies.</summary>
internal static partial class PosixFileLock
{
    private const int ReadWrite = 2;
    private const int Create = 0x40;
    private const int CloseOnExec = 0x80000;
    private const int LockExclusive = 2;
    private const int LockNonBlocking = 4;

    /// <summary>
    /// Opens (creating, mode 0600) a lock file. The file is opened with libc directly because .NET's own
    /// FileStream takes a shared flock of its own and would fail, instead of reporting, while another holds it.
    /// </summary>
    public static SafeFileHandle Open(string path)
    {
        var fd = open(path, ReadWrite | Create | CloseOnExec, 0x180);
        if (fd < 0)
        {
            throw new IOException($"cannot open {path}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Takes an exclusive lock without waiting; false when another process holds it.</summary>
    public static bool TryLockExclusive(SafeHandle file)
    {
        if (flock(file, LockExclusive | LockNonBlocking) == 0)
        {
            return true;
        }
        var errno = Marshal.GetLastPInvokeError();
        return errno == LibC.EAGAIN ? false : throw new IOException($"flock failed: {Marshal.GetPInvokeErrorMessage(errno)}");
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, int mode);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(SafeHandle fd, int operation);
}
