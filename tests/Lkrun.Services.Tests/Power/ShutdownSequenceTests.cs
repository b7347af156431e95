using Lkrun.Services.Power;
using Microsoft.Extensions.Time.Testing;

namespace Lkrun.Services.Tests.Power;

public class ShutdownSequenceTests
{
    private sealed class FakeVm(bool obeysPowerButton, bool controlFailsOnPress = false, int obeysFromPress = 1) : IPowerControl
    {
        private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int PowerButtonPresses { get; private set; }

        public int HardStops { get; private set; }

        public Task Stopped => _stopped.Task;

        public Task PressPowerButtonAsync(CancellationToken cancellation)
        {
            PowerButtonPresses++;
            if (controlFailsOnPress)
            {
                return Task.FromException(new IOException("the control connection closed before replying"));
            }
            if (obeysPowerButton && PowerButtonPresses >= obeysFromPress)
            {
                _stopped.TrySetResult();
            }
            return Task.CompletedTask;
        }

        public void ExitByItself() => _stopped.TrySetResult();

        public Task StopHardAsync(CancellationToken cancellation)
        {
            HardStops++;
            _stopped.TrySetResult();
            return Task.CompletedTask;
        }
    }

    [Fact]
    public async Task A_guest_that_obeys_the_power_button_is_never_stopped_hard()
    {
        var vm = new FakeVm(obeysPowerButton: true);
        var outcome = await new ShutdownSequence(vm, TimeSpan.FromSeconds(30)).RunAsync(CancellationToken.None);
        Assert.Equal(ShutdownOutcome.PoweredOff, outcome);
        Assert.Equal(1, vm.PowerButtonPresses);
        Assert.Equal(0, vm.HardStops);
    }

    [Fact]
    public async Task A_guest_that_ignores_the_power_button_is_stopped_hard_after_the_grace_period()
    {
        var time = new FakeTimeProvider();
        var vm = new FakeVm(obeysPowerButton: false);
        var sequence = new ShutdownSequence(vm, TimeSpan.FromSeconds(30), time).RunAsync(CancellationToken.None);
        await AdvanceAsync(time, TimeSpan.FromSeconds(29));
        Assert.False(sequence.IsCompleted);
        Assert.Equal(0, vm.HardStops);
        await AdvanceAsync(time, TimeSpan.FromSeconds(1));
        Assert.Equal(ShutdownOutcome.StoppedHard, await sequence);
        Assert.Equal(1, vm.HardStops);
    }

    [Fact]
    public async Task The_button_is_pressed_again_at_each_interval_until_the_grace_period_ends()
    {
        var time = new FakeTimeProvider();
        var vm = new FakeVm(obeysPowerButton: false);
        var sequence = new ShutdownSequence(vm, TimeSpan.FromSeconds(12), time).RunAsync(CancellationToken.None);
        await AdvanceAsync(time, TimeSpan.Zero);
        Assert.Equal(1, vm.PowerButtonPresses);
        await AdvanceAsync(time, ShutdownSequence.PressInterval);
        Assert.Equal(2, vm.PowerButtonPresses);
        await AdvanceAsync(time, ShutdownSequence.PressInterval);
        Assert.Equal(3, vm.PowerButtonPresses);
        // 10 s gone of 12: the last wait is the 2 s left, and then the plug is pulled without another press.
        await AdvanceAsync(time, TimeSpan.FromSeconds(2));
        Assert.Equal(ShutdownOutcome.StoppedHard, await sequence);
        Assert.Equal(3, vm.PowerButtonPresses);
        Assert.Equal(1, vm.HardStops);
    }

    [Fact]
    public async Task A_guest_that_handles_the_button_only_later_in_its_boot_powers_off_on_a_later_press()
    {
        // As a Debian guest whose logind starts a while after the first press.
        var time = new FakeTimeProvider();
        var vm = new FakeVm(obeysPowerButton: true, obeysFromPress: 3);
        var sequence = new ShutdownSequence(vm, TimeSpan.FromSeconds(30), time).RunAsync(CancellationToken.None);
        await AdvanceAsync(time, TimeSpan.Zero);
        Assert.False(sequence.IsCompleted);
        await AdvanceAsync(time, ShutdownSequence.PressInterval);
        Assert.False(sequence.IsCompleted);
        await AdvanceAsync(time, ShutdownSequence.PressInterval);
        Assert.Equal(ShutdownOutcome.PoweredOff, await sequence);
        Assert.Equal(3, vm.PowerButtonPresses);
        Assert.Equal(0, vm.HardStops);
    }

    /// <summary>Moves the fake clock, then lets the sequence's continuations run.</summary>
    private static async Task AdvanceAsync(FakeTimeProvider time, TimeSpan by)
    {
        await Task.Delay(50, TestContext.Current.CancellationToken);
        time.Advance(by);
        await Task.Delay(50, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_press_that_fails_while_the_vm_goes_away_ends_as_powered_off()
    {
        var time = new FakeTimeProvider();
        var vm = new FakeVm(obeysPowerButton: false, controlFailsOnPress: true);
        var sequence = new ShutdownSequence(vm, TimeSpan.FromSeconds(30), time).RunAsync(CancellationToken.None);
        await Task.Yield();
        Assert.False(sequence.IsCompleted);

        vm.ExitByItself();
        Assert.Equal(ShutdownOutcome.PoweredOff, await sequence);
        Assert.Equal(0, vm.HardStops);
    }

    [Fact]
    public async Task A_vm_already_stopped_needs_nothing()
    {
        var vm = new FakeVm(obeysPowerButton: true);
        await vm.StopHardAsync(CancellationToken.None);
        Assert.Equal(ShutdownOutcome.PoweredOff, await new ShutdownSequence(vm, TimeSpan.FromSeconds(1)).RunAsync(CancellationToken.None));
        Assert.Equal(0, vm.PowerButtonPresses);
    }
}
