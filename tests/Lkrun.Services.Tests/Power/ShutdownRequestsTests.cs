using Lkrun.Services.Power;
using Microsoft.Extensions.Time.Testing;

namespace Lkrun.Services.Tests.Power;

public class ShutdownRequestsTests
{
    private sealed class FakeVm(bool obeysPowerButton) : IPowerControl
    {
        private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int PowerButtonPresses;

        public int HardStops;

        public Task Stopped => _stopped.Task;

        public Task PressPowerButtonAsync(CancellationToken cancellation)
        {
            Interlocked.Increment(ref PowerButtonPresses);
            if (obeysPowerButton)
            {
                _stopped.TrySetResult();
            }
            return Task.CompletedTask;
        }

        public Task StopHardAsync(CancellationToken cancellation)
        {
            Interlocked.Increment(ref HardStops);
            _stopped.TrySetResult();
            return Task.CompletedTask;
        }
    }

    [Fact]
    public async Task A_clean_shutdown_is_not_a_hard_stop()
    {
        var vm = new FakeVm(obeysPowerButton: true);
        var requests = new ShutdownRequests(TimeSpan.FromSeconds(30));
        requests.Attach(vm);
        requests.OnSignal();
        await vm.Stopped;
        Assert.Null(await requests.HardStopAsync());
        Assert.Equal(0, vm.HardStops);
    }

    [Fact]
    public async Task A_second_signal_stops_the_vm_hard_and_says_so()
    {
        var vm = new FakeVm(obeysPowerButton: false);
        var requests = new ShutdownRequests(TimeSpan.FromSeconds(30), new FakeTimeProvider());
        requests.Attach(vm);
        requests.OnSignal();
        Assert.True(requests.IsStopping);
        requests.OnSignal();
        await vm.Stopped;
        Assert.Equal("stopped the VM hard (a second signal)", await requests.HardStopAsync());
    }

    [Fact]
    public async Task A_hard_stop_from_the_console_keys_says_which_keys()
    {
        var vm = new FakeVm(obeysPowerButton: true);
        var requests = new ShutdownRequests(TimeSpan.FromSeconds(30));
        requests.Attach(vm);
        requests.StopHard("Ctrl-A x");
        await vm.Stopped;
        Assert.Equal("stopped the VM hard (Ctrl-A x)", await requests.HardStopAsync());
        Assert.Equal(0, vm.PowerButtonPresses);
    }

    [Fact]
    public async Task A_guest_that_outlasts_the_grace_period_is_reported_as_stopped_after_it()
    {
        var time = new FakeTimeProvider();
        var vm = new FakeVm(obeysPowerButton: false);
        var requests = new ShutdownRequests(TimeSpan.FromSeconds(30), time);
        requests.Attach(vm);
        requests.RequestStop(TimeSpan.FromSeconds(4));
        for (var i = 0; i < 4 && !vm.Stopped.IsCompleted; i++)
        {
            await Task.Delay(50, TestContext.Current.CancellationToken);
            time.Advance(TimeSpan.FromSeconds(2));
        }
        await vm.Stopped;
        Assert.Equal("the guest did not power off within 4 s of the power button; stopped it", await requests.HardStopAsync());
    }

    [Fact]
    public async Task A_signal_before_the_vm_started_starts_the_shutdown_once_it_has()
    {
        var vm = new FakeVm(obeysPowerButton: true);
        var requests = new ShutdownRequests(TimeSpan.FromSeconds(30));
        requests.OnSignal();
        Assert.Equal(0, vm.PowerButtonPresses);
        requests.Attach(vm);
        await vm.Stopped;
        Assert.Equal(1, vm.PowerButtonPresses);
        Assert.Equal(0, vm.HardStops);
        Assert.Null(await requests.HardStopAsync());
    }

    [Fact]
    public async Task Two_signals_before_the_vm_started_stop_it_hard_once_it_has()
    {
        var vm = new FakeVm(obeysPowerButton: true);
        var requests = new ShutdownRequests(TimeSpan.FromSeconds(30));
        requests.OnSignal();
        requests.OnSignal();
        requests.Attach(vm);
        await vm.Stopped;
        Assert.Equal(1, vm.HardStops);
        Assert.Equal("stopped the VM hard (a second signal)", await requests.HardStopAsync());
    }

    [Fact]
    public async Task Clean_requests_from_several_sources_run_one_sequence()
    {
        var time = new FakeTimeProvider();
        var vm = new FakeVm(obeysPowerButton: false);
        var requests = new ShutdownRequests(TimeSpan.FromSeconds(30), time);
        requests.Attach(vm);
        requests.RequestStop();
        requests.OnConsoleLost();
        requests.RequestStop(TimeSpan.FromSeconds(1));
        await Task.Delay(100, TestContext.Current.CancellationToken);
        // One sequence, one press so far; the console's loss is no second signal.
        Assert.Equal(1, vm.PowerButtonPresses);
        Assert.Equal(0, vm.HardStops);
    }
}
