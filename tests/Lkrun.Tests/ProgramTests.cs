namespace Lkrun.Tests;

/// <summary>Runs the whole program in-process; console redirection is global, so these tests never run in parallel.</summary>
[CollectionDefinition(nameof(ProgramTests), DisableParallelization = true)]
public sealed class ProgramCollection;

[Collection(nameof(ProgramTests))]
public sealed class ProgramTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-program-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int ExitCode, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var (previousOut, previousError) = (Console.Out, Console.Error);
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            return (Program.Main(args), output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(previousOut);
            Console.SetError(previousError);
        }
    }

    [Theory]
    [InlineData(new[] { "run", "-bogus", "img" }, "lkrun: unknown flag -bogus; see 'lkrun run --help'")]
    [InlineData(new[] { "run", "--bogus=1", "img" }, "lkrun: unknown flag --bogus=1; see 'lkrun run --help'")]
    [InlineData(new[] { "run" }, "lkrun: missing the image prefix; see 'lkrun run --help'")]
    [InlineData(new[] { "run", "img", "-mem" }, "lkrun: -mem needs a value; see 'lkrun run --help'")]
    [InlineData(new[] { "run", "img", "other" }, "lkrun: unexpected argument 'other'; see 'lkrun run --help'")]
    [InlineData(new[] { "run", "qemu", "-bogus", "img" }, "lkrun: unknown flag -bogus; see 'lkrun run qemu --help'")]
    public void Usage_errors_are_one_line_with_exit_code_2(string[] args, string expected)
    {
        var (code, _, error) = Run(args);
        Assert.Equal(2, code);
        Assert.Equal(expected, error.TrimEnd('\n'));
    }

    [Fact]
    public void Missing_image_files_exit_1_and_create_no_state_dir()
    {
        var prefix = Path.Combine(_dir, "absent");
        var (code, _, error) = Run("run", prefix);
        Assert.Equal(1, code);
        Assert.Contains($"missing {prefix}-kernel", error);
        Assert.Single(error.TrimEnd('\n').Split('\n'));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir));
    }

    [Fact]
    public void Virtualization_framework_needs_macos()
    {
        Assert.SkipWhen(OperatingSystem.IsMacOS(), "this checks the message on other systems");
        foreach (var suffix in new[] { "-kernel", "-initrd.img", "-cmdline" })
        {
            File.WriteAllText(Path.Combine(_dir, "img" + suffix), "x");
        }
        var (code, _, error) = Run("run", "vz", Path.Combine(_dir, "img"));
        Assert.Equal(2, code);
        Assert.Contains("needs macOS", error);
        Assert.Contains("qemu", error);
        Assert.False(Directory.Exists(Path.Combine(_dir, "img-state")));
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("run", "--help")]
    public void Help_is_printed(params string[] args)
    {
        var (code, output, _) = Run(args);
        Assert.Equal(0, code);
        Assert.Contains("Usage:", output);
    }

    [Fact]
    public void Run_help_lists_linuxkit_flags()
    {
        var (_, output, _) = Run("run", "--help");
        foreach (var flag in new[] { "-cpus", "-mem", "-state", "-kernel", "-console-file", "-disk", "-data", "-data-file", "-squashfs", "-iso", "-uefi", "-fw", "-networking", "-publish", "-ip", "-vsock-ports", "-accel", "-qemu" })
        {
            Assert.Contains(flag + " ", output);
        }
    }
}
