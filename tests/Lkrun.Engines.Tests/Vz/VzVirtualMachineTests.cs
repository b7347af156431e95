using Lkrun.Engines.Tests.Vz.Fakes;
using Lkrun.Engines.Vz.Machine;
using Lkrun.Services.Power;
using Microsoft.Extensions.Time.Testing;

namespace Lkrun.Engines.Tests.Vz;

public sealed class VzVirtualMachineTests : IAsyncLifetime
{
    private readonly VzHarness _vm = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _vm.DisposeAsync();

    private static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    /// <summary>The messages sent to the VM itself, in order, but for the observer's reads of <c>state</c>.</summary>
    private List<string> VmMessages() =>
        [.. _vm.Fake.Calls.Where(call => call.Receiver == "VZVirtualMachine" && call.Selector != "state").Select(call => call.Selector)];

    [Fact]
    public async Task A_vm_starts_on_its_queue_with_its_delegate_and_observer()
    {
        var machine = await _vm.StartAsync();

        Assert.Equal(VzMachineState.Running, machine.State);
        Assert.False(machine.Exit.IsCompleted);
        Assert.NotNull(machine.SocketDevice);
        Assert.Equal(
            ["alloc", "initWithConfiguration:queue:", "setDelegate:", "addObserver:forKeyPath:options:context:", "socketDevices", "canStart", "startWithCompletionHandler:"],
            VmMessages());
        // The observer read the state at each change: Starting, then Running.
        Assert.Equal(3, _vm.Fake.Calls.Count(call => call.Selector == "state"));
        Assert.Equal("dev.lkrun.virtual-machine", _vm.Fake.Queue!.Label);
        await _vm.StopAndAssertCleanAsync();
        Assert.Equal(
            ["canStop", "stopWithCompletionHandler:", "removeObserver:forKeyPath:", "setDelegate:", "release"],
            VmMessages()[7..]);
    }

    [Fact]
    public async Task A_failed_start_is_one_line_and_leaves_nothing_behind()
    {
        _vm.Fake.StartError = FakeObjCRuntime.Error("Internal Virtualization error.\nThe virtual machine failed to start.", 1);

        var error = await Assert.ThrowsAsync<EngineException>(_vm.StartAsync);

        Assert.Equal("virtualization.framework could not start the VM: Internal Virtualization error; The virtual machine failed to start (VZErrorDomain 1)", error.Message);
        Assert.Null(_vm.Machine);
        await _vm.StopAndAssertCleanAsync();
        Assert.DoesNotContain("stopWithCompletionHandler:", VmMessages());
    }

    [Fact]
    public async Task A_configuration_that_does_not_validate_makes_no_vm_and_leaves_nothing_behind()
    {
        _vm.Fake.ValidationError = FakeObjCRuntime.Error("The number of CPUs (2) exceeds the maximum allowed (1).", 2);

        var error = await Assert.ThrowsAsync<EngineException>(_vm.StartAsync);

        Assert.Equal("virtualization.framework: the VM configuration: The number of CPUs (2) exceeds the maximum allowed (1) (VZErrorDomain 2)", error.Message);
        Assert.Null(_vm.Fake.Machine);
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task A_start_refused_for_the_entitlement_says_how_to_sign()
    {
        _vm.Fake.StartError = FakeObjCRuntime.Error("The process doesn’t have the “com.apple.security.virtualization” entitlement.", 2);

        var error = await Assert.ThrowsAsync<EngineException>(_vm.StartAsync);

        Assert.Contains("is not signed with the com.apple.security.virtualization entitlement", error.Message);
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task The_power_button_asks_the_guest_and_its_power_off_is_a_clean_exit()
    {
        var machine = await _vm.StartAsync();
        var time = new FakeTimeProvider();

        var outcome = await new ShutdownSequence(machine, TimeSpan.FromSeconds(30), time).RunAsync(Cancellation);

        Assert.Equal(ShutdownOutcome.PoweredOff, outcome);
        Assert.Equal(new Lkrun.Engines.VmExit(VmExitReason.GuestPoweredOff), await machine.Exit);
        Assert.Equal(1, _vm.Fake.PowerButtonPresses);
        Assert.Contains("canRequestStop", VmMessages());
        await _vm.StopAndAssertCleanAsync();
        Assert.DoesNotContain("stopWithCompletionHandler:", VmMessages());
    }

    [Fact]
    public async Task A_guest_that_ignores_the_button_is_stopped_hard_when_the_timeout_passes()
    {
        _vm.Fake.GuestHonoursPowerButton = false;
        var machine = await _vm.StartAsync();
        var time = new FakeTimeProvider();

        // The press is sent on the VM's queue before RunAsync returns; then the grace period runs on fake time.
        var shutdown = new ShutdownSequence(machine, TimeSpan.FromSeconds(30), time).RunAsync(Cancellation);
        Assert.Equal(1, _vm.Fake.PowerButtonPresses);
        _vm.Fake.Drain();
        Assert.False(shutdown.IsCompleted);
        Assert.DoesNotContain("stopWithCompletionHandler:", VmMessages());
        // Pressing again is allowed while the guest runs, as the launcher may.
        await machine.PressPowerButtonAsync(Cancellation);
        Assert.Equal(2, _vm.Fake.PowerButtonPresses);

        time.Advance(TimeSpan.FromSeconds(30));

        Assert.Equal(ShutdownOutcome.StoppedHard, await shutdown);
        Assert.Equal(new Lkrun.Engines.VmExit(VmExitReason.StoppedByHost), await machine.Exit);
        Assert.Equal(["requestStopWithError:", "requestStopWithError:", "canStop", "stopWithCompletionHandler:"], VmMessages().Where(m => m.Contains("top", StringComparison.Ordinal) && m != "canRequestStop"));
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task A_guest_that_powers_itself_off_ends_the_run_cleanly()
    {
        var machine = await _vm.StartAsync();

        _vm.Fake.GuestPowersOff();

        var exit = await machine.Exit;
        Assert.True(exit.IsClean);
        Assert.Equal(VmExitReason.GuestPoweredOff, exit.Reason);
        Assert.Equal(VzMachineState.Stopped, machine.State);
        await _vm.StopAndAssertCleanAsync();
        Assert.DoesNotContain("stopWithCompletionHandler:", VmMessages());
    }

    [Fact]
    public async Task The_frameworks_error_ends_the_run_with_one_line()
    {
        var machine = await _vm.StartAsync();

        _vm.Fake.FrameworkFails(FakeObjCRuntime.Error("The virtual machine stopped unexpectedly.", 1));

        var exit = await machine.Exit;
        Assert.False(exit.IsClean);
        Assert.Equal("the VM stopped: The virtual machine stopped unexpectedly (VZErrorDomain 1)", exit.Detail);
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task Pause_and_resume_follow_the_vms_state()
    {
        var machine = await _vm.StartAsync();

        Assert.True(machine.CanPause);
        await machine.PauseAsync(Cancellation);
        Assert.Equal(VzMachineState.Paused, machine.State);
        Assert.True(machine.IsPaused);
        var error = await Assert.ThrowsAsync<EngineException>(() => machine.PauseAsync(Cancellation));
        Assert.Equal("the VM cannot pause in its state Paused", error.Message);
        await machine.ResumeAsync(Cancellation);
        Assert.Equal(VzMachineState.Running, machine.State);

        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task The_power_button_resumes_a_paused_vm_so_that_its_guest_can_answer()
    {
        var machine = await _vm.StartAsync();
        await machine.PauseAsync(Cancellation);

        await machine.PressPowerButtonAsync(Cancellation);

        Assert.False(machine.IsPaused);
        Assert.Equal(VmExitReason.GuestPoweredOff, (await machine.Exit.WaitAsync(Cancellation)).Reason);
        await _vm.StopAndAssertCleanAsync();
    }

    [Fact]
    public async Task A_stop_is_idempotent_and_calls_after_dispose_do_nothing()
    {
        var machine = await _vm.StartAsync();
        await machine.StopHardAsync(Cancellation);
        await machine.StopHardAsync(Cancellation);
        Assert.Equal(VmExitReason.StoppedByHost, (await machine.Exit).Reason);
        await _vm.StopAndAssertCleanAsync();

        await machine.PressPowerButtonAsync(Cancellation);
        await machine.StopHardAsync(Cancellation);
        await machine.DisposeAsync();
        Assert.Single(VmMessages(), "stopWithCompletionHandler:");
        _vm.Fake.AssertClean();
    }
}
