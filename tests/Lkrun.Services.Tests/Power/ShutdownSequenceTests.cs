using Lkrun.Services.Power;
using Microsoft.Extensions.Time.Testing;

namespace Lkrun.Services.Tests.Power;

public class ShutdownSequenceTests
{
    private sealed class FakeVm(bool obeysPowerButton, bool controlFailsOnPress = false) : IPowerControl
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
            if (obeysPowerButton)
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
        time.Advance(TimeSpan.FromSeconds(29));
        await Task.Yield();
        Assert.False(sequence.IsCompleted);
        Assert.Equal(0, vm.HardStops);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(ShutdownOutcome.StoppedHard, await sequence);
        Assert.Equal(1, vm.HardStops);
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
