using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Lkrun.Services.Interop;

/// <summary>Detaching a service process from the terminal it was started from.</summary>
internal static partial class ProcessSession
{
    /// <summary>
    /// Makes the calling process the leader of a session of its own, so that neither the terminal's signals nor
    /// its hang-up reach it, and points its standard input at /dev/null and its standard output and error at
    /// <paramref name="log"/> (opened for appending), so that whatever it or the runtime prints lands there.
    /// </summary>
    public static void Detach(SafeFileHandle log)
    {
        // EPERM when the process leads a process group already; it has no terminal to leave then.
        _ = setsid();
        using var nothing = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
        Redirect(nothing, 0);
        Redirect(log, 1);
        Redirect(log, 2);
    }

    private static void Redirect(SafeFileHandle from, int to)
    {
        if (dup2(from, to) < 0)
        {
            throw new IOException($"dup2 onto descriptor {to} failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setsid();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int dup2(SafeFileHandle from, int to);
}
