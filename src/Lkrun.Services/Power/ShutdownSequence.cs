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
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The control channel failed, most often because the VM is already going away (QEMU closes it
            // before it exits). Either way the grace period tells a VM that stops from one that does not.
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
