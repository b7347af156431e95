using System.CommandLine;
using System.Text.RegularExpressions;
using Lkrun.Cli;

namespace Lkrun.Tests.Cli;

/// <summary>The README's flag table and <c>lkrun run --help</c> spell the same flags the same way.</summary>
public sealed partial class ReadmeFlagsTests
{
    [Fact]
    public void The_readme_lists_every_run_flag_as_help_spells_it()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md"));
        var table = readme[readme.IndexOf("| flag | meaning |", StringComparison.Ordinal)..];
        table = table[..table.IndexOf("\n\n", StringComparison.Ordinal)];
        var documented = table.Split('\n')
            .Where(line => line.StartsWith("| `", StringComparison.Ordinal))
            .SelectMany(line => FlagInCell().Matches(line[..line.IndexOf(" | ", StringComparison.Ordinal)]).Select(match => match.Groups[1].Value))
            .ToHashSet();

        var run = new RunCommand((_, _) => Task.FromResult(0)).Command;
        // Help shows each flag by its one-dash names: the spelling the README must use.
        var helped = run.Options
            .Where(option => option is not System.CommandLine.Help.HelpOption)
            .SelectMany(option => option.Aliases.Append(option.Name).Where(IsOneDash))
            .ToHashSet();
        Assert.Equal(helped.Order(), documented.Order());
    }

    private static bool IsOneDash(string name) => name.StartsWith('-') && !name.StartsWith("--", StringComparison.Ordinal);

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "lkrun.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("no checkout above the tests");
    }

    /// <summary>A flag written in backquotes, as the table's first column has them: <c>`-cpus N`</c>, <c>`-iso`</c>, ...</summary>
    [GeneratedRegex(@"`(-{1,2}[a-z][a-z-]*)")]
    private static partial Regex FlagInCell();
}
