using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Lkrun.Services.Interop;

/// <summary>Advisory whole-file locks (flock), released by the kernel when the holder dies.</summary>
internal static partial class PosixFileLock
{
    private const int ReadOnly = 0;
    private const int ReadWrite = 2;
    private const int Create = 0x40;
    private const int CloseOnExec = 0x80000;
    private const int LockShared = 1;
    private const int LockExclusive = 2;
    private const int LockNonBlocking = 4;
    private const int NoSuchFile = 2;

    private static readonly TimeSpan RetryInterval = TimeSpan.FromMilliseconds(20);

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

    /// <summary>
    /// Opens and locks <paramref name="path"/> exclusively, waiting while others hold it for moments (registries
    /// are locked for milliseconds); an <see cref="IOException"/> naming <paramref name="what"/> after <paramref name="timeout"/>.
    /// </summary>
    public static SafeFileHandle WaitForExclusive(string path, TimeSpan timeout, string what)
    {
        var file = Open(path);
        var waited = Stopwatch.StartNew();
        while (!TryLockExclusive(file))
        {
            if (waited.Elapsed > timeout)
            {
                file.Dispose();
                throw new IOException($"{what} {path} has been locked by another lkrun for more than {timeout.TotalSeconds:0} s");
            }
            Thread.Sleep(RetryInterval);
        }
        return file;
    }

    /// <summary>
    /// True when some process holds a lock on <paramref name="path"/>; false when nobody does or the file does not
    /// exist. Creates nothing. The probe holds a shared lock for an instant, so a taker that finds the lock busy
    /// should look again a moment later before it gives up.
    /// </summary>
    public static bool IsHeld(string path)
    {
        var fd = open(path, ReadOnly | CloseOnExec, 0);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno == NoSuchFile ? false : throw new IOException($"cannot open {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        using var file = new SafeFileHandle(fd, ownsHandle: true);
        if (flock(file, LockShared | LockNonBlocking) == 0)
        {
            return false;
        }
        var error = Marshal.GetLastPInvokeError();
        return error == LibC.EAGAIN ? true : throw new IOException($"flock failed: {Marshal.GetPInvokeErrorMessage(error)}");
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, int mode);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(SafeHandle fd, int operation);
}
