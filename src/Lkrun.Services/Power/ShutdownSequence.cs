namespace Lkrun.Services.Power;

public enum ShutdownOutcome
{
    /// <summary>The guest powered off after the power button.</summary>
    PoweredOff,

    /// <summary>The guest did not power off within the grace period and was stopped hard.</summary>
    StoppedHard,
}

/// <summary>
/// A clean stop as a laptop lid would do it: press the power button, give the guest a grace period to run its
/// shutdown, and pull the plug only when that period runs out. The button is pressed again every
/// <see cref="PressInterval"/> meanwhile: a guest early in its boot has nothing that handles the first press yet
/// (logind starts a minute into a Debian boot under emulation), and a guest already shutting down ignores the next.
/// </summary>
public sealed class ShutdownSequence(IPowerControl vm, TimeSpan gracePeriod, TimeProvider? time = null)
{
    public static readonly TimeSpan PressInterval = TimeSpan.FromSeconds(5);

    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public TimeSpan GracePeriod => gracePeriod;

    public async Task<ShutdownOutcome> RunAsync(CancellationToken cancellation)
    {
        if (vm.Stopped.IsCompleted)
        {
            return ShutdownOutcome.PoweredOff;
        }
        var started = _time.GetTimestamp();
        while (true)
        {
            await PressAsync(cancellation);
            var left = gracePeriod - _time.GetElapsedTime(started);
            if (left <= TimeSpan.Zero)
            {
                break;
            }
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            var next = Task.Delay(left < PressInterval ? left : PressInterval, _time, wait.Token);
            if (await Task.WhenAny(vm.Stopped, next) == vm.Stopped)
            {
                wait.Cancel();
                return ShutdownOutcome.PoweredOff;
            }
            await next;
            if (_time.GetElapsedTime(started) >= gracePeriod)
            {
                break;
            }
        }
        await vm.StopHardAsync(cancellation);
        return ShutdownOutcome.StoppedHard;
    }

    private async Task PressAsync(CancellationToken cancellation)
    {
        try
        {
            await vm.PressPowerButtonAsync(cancellation);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The control channel failed, most often because the VM is already going away (QEMU closes it
            // before it exits). Either way the grace period tells a VM that stops from one that does not.
        }
    }
}
