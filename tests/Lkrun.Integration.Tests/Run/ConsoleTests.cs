using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Run;

public sealed class ConsoleTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task Console_output_streams_to_stdout_when_it_is_redirected()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest);
        await lkrun.WaitForOutputAsync("lkrun-guest: init started");
        await lkrun.WaitForReadyAsync();
        // stdin is a pipe, so it is not read: typing reaches nobody.
        await lkrun.TypeAsync("echo typed-$((40+2))\n");
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.DoesNotContain("typed-42", lkrun.Output);
    }

    [Fact]
    public async Task Console_file_fills_console_log_instead_of_stdout()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-console-file"], TestImages.Guest);
        var log = Path.Combine(_scratch["state"], "console.log");
        await LkrunProcess.WaitUntilAsync(() => File.Exists(log) && File.ReadAllText(log).Contains("lkrun-guest: ready"), LkrunProcess.BootTimeout, "ready in console.log");
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.DoesNotContain("lkrun-guest", lkrun.Output);
        Assert.Contains("lkrun-guest: shutting down", File.ReadAllText(log));
        Assert.Contains($"console output goes to {log}", lkrun.Error);
    }

    [Theory]
    [InlineData("console=ttyS0", "ttyS0")]
    [InlineData("console=hvc0", "hvc0")]
    public async Task An_interactive_terminal_reaches_the_console_the_cmdline_names(string cmdline, string device)
    {
        var image = _scratch.ImageWithCmdline(TestImages.Guest, cmdline);
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], image, terminal: true);
        await lkrun.WaitForOutputAsync($"lkrun-guest: console {device}");
        await lkrun.WaitForReadyAsync();
        await lkrun.WaitForOutputAsync("lkrun-guest# ");
        await lkrun.TypeAsync("echo typed-$((40+2)) on $(tty)\r");
        await lkrun.WaitForOutputAsync($"typed-42 on /dev/(console|{device})");
        // Ctrl-A x is the documented key sequence that stops the VM at once: a hard stop, one line and exit 1.
        await lkrun.TypeAsync("\u0001x");
        Assert.Equal(1, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun: stopped the VM hard (Ctrl-A x)", lkrun.Output);
    }

    [Fact]
    public async Task The_terminal_is_restored_when_lkrun_exits()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff");
        // The shell under the pseudo-terminal prints the terminal's mode after lkrun returns: raw mode must be gone.
        var lkrunCall = LkrunProcess.LkrunCommand(["run", "-mem", "256", "-state", _scratch["state"], image]);
        await using var shell = LkrunProcess.StartInTerminal($"stty -a; {lkrunCall}; echo lkrun-exit=$?; stty -a", _scratch["state"]);
        Assert.Equal(0, await shell.WaitForExitAsync());
        var modes = shell.Output.Split("lkrun-exit=");
        Assert.StartsWith("0", modes[1]);
        Assert.Matches(@"(?<!-)icanon", modes[0]);
        Assert.Matches(@"(?<!-)icanon", modes[1]);
        Assert.Matches(@"(?<!-)echo ", modes[1]);
    }

    [Fact]
    public async Task Poweroff_typed_at_the_guests_shell_powers_the_vm_off()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest, terminal: true);
        await lkrun.WaitForReadyAsync();
        await lkrun.WaitForOutputAsync("lkrun-guest# ");
        await lkrun.TypeAsync("poweroff\r");
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: shutting down", lkrun.Output);
        Assert.DoesNotContain("lkrun: ", lkrun.Output.Replace("lkrun: guest address", "", StringComparison.Ordinal).Replace("lkrun: /dev/kvm", "", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_console_of_lkrun_run_on_a_terminal_cannot_be_attached_elsewhere()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "--name", "fg"], TestImages.Guest, terminal: true);
        await lkrun.WaitForReadyAsync();
        var pid = await lkrun.LkrunPidAsync();
        var attach = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(Repository.LkrunBinary, ["console", _scratch["state"]])
        {
            RedirectStandardError = true,
            RedirectStandardInput = true,
            Environment = { ["XDG_STATE_HOME"] = Path.Combine(_scratch.Path, "xdg-state") },
        })!;
        var error = await attach.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await attach.WaitForExitAsync(TestContext.Current.CancellationToken);
        Assert.Equal(1, attach.ExitCode);
        Assert.Equal($"lkrun: fg: its console is on the terminal of lkrun run (pid {pid})\n", error);
        await lkrun.TypeAsync("\u0001p");
        Assert.Equal(0, await lkrun.WaitForExitAsync());
    }
}
