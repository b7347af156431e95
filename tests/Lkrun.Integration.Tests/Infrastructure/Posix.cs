using System.Runtime.InteropServices;

namespace Lkrun.Integration.Tests.Infrastructure;

public static partial class Posix
{
    public const int SIGKILL = 9;
    public const int SIGSEGV = 11;
    public const int SIGTERM = 15;
    public const int SIGINT = 2;

    public static void Signal(int pid, int signal) => Assert.Equal(0, kill(pid, signal));

    /// <summary>True while <paramref name="pid"/> is a live process (a zombie counts as gone).</summary>
    public static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].First() != 'Z';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    [LibraryImport("libc")]
    private static partial int kill(int pid, int signal);
}
