using System.Runtime.InteropServices;

namespace Lkrun.Services.Power;

/// <summary>
/// Turns the user's requests to stop into actions on the VM's power. The first SIGTERM (or SIGHUP, or SIGINT off an
/// interactive console) presses the power button and gives the guest its grace period; a second one stops the VM
/// at once. A closed console output presses the button too, but does not count as a signal: a terminal that goes
/// away sends SIGHUP and fails the next write, and that is one request. A request that comes while the VM is still
/// starting stops it as soon as it has started, since its guest cannot handle the button yet.
/// </summary>
public sealed class ShutdownRequests(TimeSpan gracePeriod)
{
    private readonly object _gate = new();
    private IPowerControl? _vm;
    private Task<ShutdownOutcome>? _sequence;
    private int _signals;
    private bool _consoleLost;

    public void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        lock (_gate)
        {
            _signals++;
            ActLocked();
        }
    }

    public void OnConsoleLost()
    {
        lock (_gate)
        {
            _consoleLost = true;
            ActLocked();
        }
    }

    /// <summary>The VM has started: requests act on it from now on, and one that came before stops it.</summary>
    public void Attach(IPowerControl vm)
    {
        lock (_gate)
        {
            _vm = vm;
            if (_signals > 0 || _consoleLost)
            {
                _ = vm.StopHardAsync(CancellationToken.None);
            }
        }
    }

    /// <summary>How the shutdown sequence ended, or null when none ran.</summary>
    public async Task<ShutdownOutcome?> OutcomeAsync() => _sequence is null ? null : await _sequence;

    private void ActLocked()
    {
        if (_vm is null)
        {
            return;
        }
        if (_signals > 1)
        {
            _ = _vm.StopHardAsync(CancellationToken.None);
        }
        else if (_sequence is null)
        {
            var vm = _vm;
            _sequence = Task.Run(() => new ShutdownSequence(vm, gracePeriod).RunAsync(CancellationToken.None));
        }
    }
}
