namespace Lkrun.Fuzz.Tests;

/// <summary>
/// Replays the committed fuzz corpus (fuzz/corpus/TARGET/*) through each target's checks, without AFL, so that a
/// change that breaks a parser's promises on an input the fuzzer once found fails the ordinary test run.
/// </summary>
public sealed class CorpusReplayTests
{
    private static readonly string CorpusRoot = Path.Combine(RepositoryRoot(), "fuzz", "corpus");

    public static TheoryData<string> Targets => [.. FuzzTargets.Names];

    [Theory]
    [MemberData(nameof(Targets))]
    public void Every_corpus_input_keeps_the_targets_promises(string name)
    {
        var target = FuzzTargets.Create(name)!;
        var files = Directory.Exists(Path.Combine(CorpusRoot, name)) ? Directory.GetFiles(Path.Combine(CorpusRoot, name)) : [];
        Assert.NotEmpty(files);
        var failures = new List<string>();
        foreach (var file in files.Order(StringComparer.Ordinal))
        {
            try
            {
                target.Run(File.ReadAllBytes(file));
            }
            catch (Exception e)
            {
                failures.Add($"{Path.GetFileName(file)}: {e.GetType().Name}: {e.Message}");
            }
        }
        Assert.True(failures.Count == 0, $"{name}: {failures.Count} of {files.Length} inputs failed:\n{string.Join('\n', failures)}");
    }

    [Fact]
    public void Every_corpus_folder_is_a_target()
    {
        Assert.Empty(Directory.GetDirectories(CorpusRoot).Select(Path.GetFileName).Except(FuzzTargets.Names));
    }

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "lkrun.slnx")))
            {
                return directory.FullName;
            }
        }
        throw new InvalidOperationException($"no lkrun.slnx above {AppContext.BaseDirectory}");
    }
}
