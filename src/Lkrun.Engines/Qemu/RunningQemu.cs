using Lkrun.Services.Processes;
using System.Net.Sockets;
using System.Text.Json;

namespace Lkrun.Engines.Qemu;

/// <summary>A started QEMU under QMP control.</summary>
internal sealed class RunningQemu : IRunningVm
{
    /// <summary>How long QEMU gets to quit over QMP before it is killed.</summary>
    private static readonly TimeSpan QuitTimeout = TimeSpan.FromSeconds(5);

    private readonly ChildProcess _process;
    private QmpClient? _qmp;
    private volatile string? _shutdownReason;
    private volatile bool _killedByHost;
    private volatile bool _paused;

    private RunningQemu(ChildProcess process)
    {
        _process = process;
        Exit = WaitForExitAsync();
    }

    public Task<VmExit> Exit { get; }

    public Task Stopped => Exit;

    public static async Task<RunningQemu> AttachAsync(ChildProcess process, Socket qmpConnection, CancellationToken cancellation)
    {
        var vm = new RunningQemu(process);
        vm._qmp = await QmpClient.OpenAsync(qmpConnection, vm.OnEvent, cancellation);
        return vm;
    }

    public bool CanPause => true;

    public bool IsPaused => _paused;

    /// <summary>A paused guest cannot see the button, so it is let run first.</summary>
    public async Task PressPowerButtonAsync(CancellationToken cancellation)
    {
        if (_paused)
        {
            await ResumeAsync(cancellation);
        }
        await Qmp.ExecuteAsync("system_powerdown", null, cancellation);
    }

    public async Task PauseAsync(CancellationToken cancellation)
    {
        await Qmp.ExecuteAsync("stop", null, cancellation);
        _paused = true;
    }

    public async Task ResumeAsync(CancellationToken cancellation)
    {
        await Qmp.ExecuteAsync("cont", null, cancellation);
        _paused = false;
    }

    public async Task StopHardAsync(CancellationToken cancellation)
    {
        if (Exit.IsCompleted)
        {
            return;
        }
        try
        {
            await Qmp.ExecuteAsync("quit", null, cancellation);
        }
        catch (QmpException)
        {
            // QEMU closes QMP as it quits, sometimes before it replies.
        }
        if (await Task.WhenAny(Exit, Task.Delay(QuitTimeout, cancellation)) != Exit)
        {
            _killedByHost = true;
            _process.Kill();
        }
        await Exit;
    }

    public async ValueTask DisposeAsync()
    {
        if (!Exit.IsCompleted)
        {
            _killedByHost = true;
            _process.Kill();
        }
        await Exit;
        if (_qmp is not null)
        {
            await _qmp.DisposeAsync();
        }
    }

    private QmpClient Qmp => _qmp ?? throw new InvalidOperationException("QMP is not open yet");

    private void OnEvent(QmpEvent qmpEvent)
    {
        if (qmpEvent.Name == "SHUTDOWN" && qmpEvent.Data.ValueKind == JsonValueKind.Object &&
            qmpEvent.Data.TryGetProperty("reason", out var reason))
        {
            _shutdownReason = reason.GetString();
        }
    }

    private async Task<VmExit> WaitForExitAsync()
    {
        var code = await _process.Exited;
        if (_qmp is not null)
        {
            // The SHUTDOWN event may still be in flight when the process is reaped: read QMP to its end first.
            await Task.WhenAny(_qmp.Completion, Task.Delay(TimeSpan.FromSeconds(2)));
        }
        if (_killedByHost)
        {
            return new VmExit(VmExitReason.StoppedByHost);
        }
        if (code != 0)
        {
            return new VmExit(VmExitReason.Crashed, _process.Describe($"QEMU exited with code {code}"));
        }
        return _shutdownReason switch
        {
            "guest-shutdown" => new VmExit(VmExitReason.GuestPoweredOff),
            "guest-reset" => new VmExit(VmExitReason.GuestRebooted),
            "guest-panic" => new VmExit(VmExitReason.GuestPanicked, "the guest kernel panicked"),
            "host-qmp-quit" => new VmExit(VmExitReason.StoppedByHost),
            var other => new VmExit(VmExitReason.Crashed, _process.Describe($"QEMU stopped unexpectedly ({other ?? "no reason given"})")),
        };
    }
}
