namespace Lkrun.Integration.Tests.Infrastructure;

/// <summary>Paths of the checkout the tests run from, and of what its scripts build.</summary>
public static class Repository
{
    public static string Root { get; } = FindRoot();

    /// <summary>The CLI as users run it: the binary <c>./lkrun</c> builds (override with LKRUN_BINARY).</summary>
    public static string LkrunBinary
    {
        get
        {
            var binary = Environment.GetEnvironmentVariable("LKRUN_BINARY") ?? Path.Combine(Root, "out", "cli", "lkrun");
            Assert.True(File.Exists(binary), $"{binary} is missing: run ./lkrun --help once to build it");
            return binary;
        }
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "lkrun.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no lkrun checkout above {AppContext.BaseDirectory}");
    }
}
