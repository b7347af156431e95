using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Run;

public sealed class LifecycleTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task Sigterm_runs_the_guest_shutdown_and_exits_0()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest);
        await lkrun.WaitForReadyAsync();
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: power button pressed", lkrun.Output);
        Assert.Contains("lkrun-guest: shutting down", lkrun.Output);
        // Only state survives the run: sockets and pid files are gone.
        var left = Directory.GetFiles(_scratch["state"]).Select(Path.GetFileName).ToList();
        Assert.Contains("vpnkit.uuid", left);
        Assert.DoesNotContain(left, name => name!.EndsWith(".sock", StringComparison.Ordinal) || name.EndsWith(".pid", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_second_sigterm_stops_the_vm_hard_with_one_line_and_exit_1()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.ignore_power_button");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], image);
        await lkrun.WaitForReadyAsync();
        await lkrun.SignalAsync(Posix.SIGTERM);
        await Task.Delay(500, TestContext.Current.CancellationToken);
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(1, await lkrun.WaitForExitAsync());
        Assert.EndsWith("lkrun: stopped the VM hard (a second signal)\n", lkrun.Error);
    }

    [Fact]
    public async Task A_sigterm_early_in_boot_is_not_lost()
    {
        // The first press comes before the guest's acpid runs; a later one reaches it.
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest);
        await lkrun.WaitForOutputAsync("lkrun-guest: init started");
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: power button pressed", lkrun.Output);
        Assert.DoesNotContain("stopped", lkrun.Error);
    }

    [Fact]
    public async Task Sigint_without_a_terminal_is_a_clean_shutdown_too()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest);
        await lkrun.WaitForReadyAsync();
        await lkrun.SignalAsync(Posix.SIGINT);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: shutting down", lkrun.Output);
    }

    [Fact]
    public async Task A_closed_console_pipe_is_a_clean_shutdown()
    {
        // As in `lkrun run ... | grep -m1 ready`: the reader leaves, and the guest's next line finds the pipe closed.
        const string userData = "#!/bin/sh\nsleep 2\necho printed after the reader left\n";
        var lkrunCall = LkrunProcess.LkrunCommand(
            ["run", "-state", _scratch["state"], "-mem", "256", "-networking", "none", "-data", userData, TestImages.Guest]);
        await using var pipeline = LkrunProcess.StartInShell(
            $"{lkrunCall} | grep -m1 'lkrun-guest: ready'; echo \"lkrun-exit=${{PIPESTATUS[0]}}\"", _scratch["state"]);
        await pipeline.WaitForReadyAsync();
        var qemu = await pipeline.QemuPidAsync();

        // 0 means the guest powered off after the button; ignoring it would have ended in a hard stop and 1.
        await pipeline.WaitForOutputAsync("^lkrun-exit=0$");
        Assert.Contains("lkrun: the console output was closed", pipeline.Error);
        Assert.False(Posix.IsAlive(qemu));
    }

    [Fact]
    public async Task A_guest_that_ignores_the_power_button_is_stopped_hard_after_the_stop_timeout()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.ignore_power_button");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "--stop-timeout", "3"], image);
        await lkrun.WaitForOutputAsync("lkrun-guest: ignoring the power button");
        await lkrun.WaitForReadyAsync();
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.NotEqual(0, await lkrun.WaitForExitAsync());
        Assert.Contains("did not power off within 3 s", lkrun.Error);
        Assert.DoesNotContain("lkrun-guest: shutting down", lkrun.Output);
    }

    [Theory]
    [InlineData("lkrun.poweroff", "lkrun-guest: powering off")]
    [InlineData("lkrun.reboot", "lkrun-guest: rebooting")]
    public async Task A_guest_that_powers_off_or_reboots_ends_lkrun_with_0(string cmdlineSwitch, string marker)
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, cmdlineSwitch);
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], image);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains(marker, lkrun.Output);
    }

    [Fact]
    public async Task Sigkill_of_lkrun_leaves_no_qemu_behind()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest);
        await lkrun.WaitForReadyAsync();
        var qemu = await lkrun.QemuPidAsync();
        Assert.True(Posix.IsAlive(qemu));
        await lkrun.SignalAsync(Posix.SIGKILL);
        await lkrun.WaitForExitAsync();
        await LkrunProcess.WaitUntilAsync(() => !Posix.IsAlive(qemu), TimeSpan.FromSeconds(10), "QEMU to die with lkrun");
    }

    [Fact]
    public async Task A_qemu_crash_ends_lkrun_non_zero_with_what_qemu_said()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest);
        await lkrun.WaitForReadyAsync();
        Posix.Signal(await lkrun.QemuPidAsync(), Posix.SIGSEGV);
        Assert.NotEqual(0, await lkrun.WaitForExitAsync());
        Assert.Matches("lkrun: QEMU exited with code 139", lkrun.Error);
    }

    [Fact]
    public async Task Qemu_failing_to_start_is_reported_with_its_last_lines_and_leaves_no_state_dir()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-accel", "no-such-accelerator"], TestImages.Guest);
        Assert.Equal(1, await lkrun.WaitForExitAsync());
        Assert.Contains("QEMU failed to start", lkrun.Error);
        Assert.Contains("no-such-accelerator", lkrun.Error);
        Assert.False(Directory.Exists(_scratch["state"]));
    }
}
