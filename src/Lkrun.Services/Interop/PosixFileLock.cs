using System.Runtime.InteropServices;

namespace Lkrun.Services.Interop;

/// <summary>Advisory whole-file locks (flock), released by the kernel when the holder dies.</summary>
internal static partial class PosixFileLock
{
    private const int LockExclusive = 2;
    private const int LockNonBlocking = 4;
    private const int WouldBlock = 11;

    /// <summary>Takes an exclusive lock without waiting; false when another process holds it.</summary>
    public static bool TryLockExclusive(SafeHandle file)
    {
        if (flock(file, LockExclusive | LockNonBlocking) == 0)
        {
            return true;
        }
        var errno = Marshal.GetLastPInvokeError();
        return errno == WouldBlock ? false : throw new IOException($"flock failed: {Marshal.GetPInvokeErrorMessage(errno)}");
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(SafeHandle fd, int operation);
}
