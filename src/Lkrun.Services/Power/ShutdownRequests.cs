using System.Runtime.InteropServices;

namespace Lkrun.Services.Power;

/// <summary>
/// Turns every request to stop the VM into one action on its power, whoever asks: signals, a console output that
/// nobody reads, the console keys, the control API. A clean stop runs one <see cref="ShutdownSequence"/> (further
/// clean requests join it); a hard stop pulls the plug and is remembered with its reason, so lkrun can say so and
/// exit 1. The first SIGTERM (or SIGHUP, or SIGINT off an interactive console) asks for a clean stop and a second
/// one for a hard stop. A closed console output asks for a clean stop but does not count as a signal: a terminal
/// that goes away sends SIGHUP and fails the next write, and that is one request. Requests that come while the VM
/// is still starting act on it as soon as it has started; the sequence's repeated presses reach a guest that is
/// still booting.
/// </summary>
public sealed class ShutdownRequests(TimeSpan gracePeriod, TimeProvider? time = null)
{
    private readonly object _gate = new();
    private IPowerControl? _vm;
    private Task<ShutdownOutcome>? _sequence;
    private TimeSpan _sequenceGrace = gracePeriod;
    private bool _stopRequested;
    private string? _hardStopReason;
    private int _signals;

    /// <summary>True once a stop, clean or hard, has been asked for.</summary>
    public bool IsStopping
    {
        get
        {
            lock (_gate)
            {
                return _stopRequested || _hardStopReason is not null;
            }
        }
    }

    public void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        OnSignal();
    }

    /// <summary>A stop signal: the first asks for a clean stop, any further one for a hard stop.</summary>
    public void OnSignal()
    {
        int signals;
        lock (_gate)
        {
            signals = ++_signals;
        }
        if (signals > 1)
        {
            StopHard("a second signal");
        }
        else
        {
            RequestStop();
        }
    }

    public void OnConsoleLost() => RequestStop();

    /// <summary>
    /// Asks for a clean stop with the grace period given at construction, or <paramref name="grace"/> when this
    /// request starts the sequence. A sequence already running goes on as it is.
    /// </summary>
    public void RequestStop(TimeSpan? grace = null)
    {
        lock (_gate)
        {
            if (_stopRequested)
            {
                return;
            }
            _stopRequested = true;
            _sequenceGrace = grace ?? _sequenceGrace;
            StartSequenceLocked();
        }
    }

    /// <summary>Stops the VM at once; <paramref name="reason"/> completes "stopped the VM hard (...)".</summary>
    public void StopHard(string reason)
    {
        IPowerControl? vm;
        lock (_gate)
        {
            _hardStopReason ??= reason;
            vm = _vm;
        }
        _ = vm?.StopHardAsync(CancellationToken.None);
    }

    /// <summary>The VM has started: requests act on it from now on, and those that came before act now.</summary>
    public void Attach(IPowerControl vm)
    {
        lock (_gate)
        {
            _vm = vm;
            if (_hardStopReason is not null)
            {
                _ = vm.StopHardAsync(CancellationToken.None);
            }
            else if (_stopRequested)
            {
                StartSequenceLocked();
            }
        }
    }

    /// <summary>
    /// Once the VM has ended: the line that says it was stopped hard, and why; null when it ended any other way.
    /// </summary>
    public async Task<string?> HardStopAsync()
    {
        Task<ShutdownOutcome>? sequence;
        string? reason;
        TimeSpan grace;
        lock (_gate)
        {
            (sequence, reason, grace) = (_sequence, _hardStopReason, _sequenceGrace);
        }
        if (reason is not null)
        {
            return $"stopped the VM hard ({reason})";
        }
        if (sequence is not null && await sequence == ShutdownOutcome.StoppedHard)
        {
            return $"the guest did not power off within {grace.TotalSeconds:0.#} s of the power button; stopped it";
        }
        return null;
    }

    private void StartSequenceLocked()
    {
        if (_vm is null || _sequence is not null)
        {
            return;
        }
        var sequence = new ShutdownSequence(_vm, _sequenceGrace, time);
        _sequence = Task.Run(() => sequence.RunAsync(CancellationToken.None));
    }
}
