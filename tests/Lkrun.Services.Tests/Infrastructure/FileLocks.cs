using System.Diagnostics;

namespace Lkrun.Services.Tests.Infrastructure;

/// <summary>Looks at flock locks from another process, as a second lkrun would, and waits for them to change.</summary>
internal static class FileLocks
{
    /// <summary>True when another process could take the lock on <paramref name="path"/> right now.</summary>
    public static bool IsFree(string path)
    {
        using var probe = Process.Start(new ProcessStartInfo("flock", ["--nonblock", path, "true"]))!;
        probe.WaitForExit();
        return probe.ExitCode == 0;
    }

    public static void WaitUntil(Func<bool> condition, string what)
    {
        var waited = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), $"timed out waiting for {what}");
            Thread.Sleep(20);
        }
    }
}
