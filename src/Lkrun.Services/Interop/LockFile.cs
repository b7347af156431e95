using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Lkrun.Services.Interop;

/// <summary>
/// Opens files that serve as flock targets. On unix, .NET's FileStream takes a shared flock of its own on every
/// file it opens, so opening a file another process holds with an exclusive flock fails with a sharing
/// violation instead of letting the caller test the lock; these handles come from libc and carry no lock.
/// </summary>
internal static partial class LockFile
{
    private const int ReadWrite = 2;
    private const int NoSuchFile = 2;

    /// <summary>Opens <paramref name="path"/>, creating it (mode 0600) when <paramref name="create"/> is set; null when it does not exist and is not created.</summary>
    public static SafeFileHandle? Open(string path, bool create)
    {
        if (create && !File.Exists(path))
        {
            try
            {
                using var _ = new FileStream(path, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew,
                    Access = FileAccess.Write,
                    Share = FileShare.ReadWrite,
                    UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                });
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another process created it first, and may hold it already.
            }
        }
        // Close-on-exec, so a child such as the hypervisor never inherits a lock and keeps it past lkrun's death.
        var closeOnExec = OperatingSystem.IsMacOS() ? 0x1000000 : 0x80000;
        var fd = open(path, ReadWrite | closeOnExec);
        if (fd >= 0)
        {
            return new SafeFileHandle(fd, ownsHandle: true);
        }
        var errno = Marshal.GetLastPInvokeError();
        return errno == NoSuchFile && !create
            ? null
            : throw new IOException($"cannot open {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
    }

    // The two-argument form: open is variadic, and no variadic argument is passed without O_CREAT.
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);
}
