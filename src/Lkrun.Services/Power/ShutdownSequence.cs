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
/// shutdown, and pull the plug only when that period runs out.
/// </summary>
public sealed class ShutdownSequence(IPowerControl vm, TimeSpan gracePeriod, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public async Task<ShutdownOutcome> RunAsync(CancellationToken cancellation)
    {
        if (vm.Stopped.IsCompleted)
        {
            return ShutdownOutcome.PoweredOff;
        }
        try
        {
            await vm.PressPowerButtonAsync(cancellation);
        }
        catch (Exception) when (vm.Stopped.IsCompleted)
        {
            // The VM went away while the button was being pressed: that is the outcome asked for.
            return ShutdownOutcome.PoweredOff;
        }
        using var grace = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var deadline = Task.Delay(gracePeriod, _time, grace.Token);
        if (await Task.WhenAny(vm.Stopped, deadline) == vm.Stopped)
        {
            grace.Cancel();
            return ShutdownOutcome.PoweredOff;
        }
        await vm.StopHardAsync(cancellation);
        return ShutdownOutcome.StoppedHard;
    }
}
