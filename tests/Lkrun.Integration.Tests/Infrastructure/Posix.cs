using System.Runtime.InteropServices;

namespace Lkrun.Integration.Tests.Infrastructure;

public static partial class Posix
{
    public const int SIGKILL = 9;
    public const int SIGSEGV = 11;
    public const int SIGTERM = 15;
    public const int SIGINT = 2;

    public static void Signal(int pid, int signal) => Assert.Equal(0, kill(pid, signal));

    /// <summary>
    /// True while any thread of <paramref name="pid"/> lives (a zombie counts as gone). A process's main thread can
    /// be a zombie while its other threads still exit, and its descriptors close only with the last of them.
    /// </summary>
    public static bool IsAlive(int pid)
    {
        try
        {
            return Directory.GetDirectories($"/proc/{pid}/task").Any(task => !IsZombie(Path.Combine(task, "stat")));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static bool IsZombie(string statPath)
    {
        try
        {
            var stat = File.ReadAllText(statPath);
            return stat[(stat.LastIndexOf(')') + 2)..].First() == 'Z';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }

    [LibraryImport("libc")]
    private static partial int kill(int pid, int signal);
}
