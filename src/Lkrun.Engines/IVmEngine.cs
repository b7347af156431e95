using Lkrun.Services.Network.Links;
using Lkrun.Services.Power;
using Lkrun.Spec;

namespace Lkrun.Engines;

/// <summary>Turns a <see cref="VmSpec"/> and its host attachments into a running VM.</summary>
public interface IVmEngine
{
    /// <summary>Checks, creating nothing, that this host can run the spec; throws <see cref="EngineException"/> if not.</summary>
    void CheckHost(VmSpec spec);

    /// <summary>How the VM's network device exchanges frames with lkrun's NAT network; settled by <see cref="CheckHost"/>.</summary>
    NetworkLinkKind NetworkLink { get; }

    Task<IRunningVm> StartAsync(VmSpec spec, VmAttachments attachments, CancellationToken cancellation);
}

public interface IRunningVm : IPowerControl, IAsyncDisposable
{
    /// <summary>How the VM ended; completes when <see cref="IPowerControl.Stopped"/> does.</summary>
    Task<VmExit> Exit { get; }
}

public enum VmExitReason
{
    GuestPoweredOff,
    GuestRebooted,
    StoppedByHost,
    GuestPanicked,
    Crashed,
}

/// <summary>How a VM ended, with the engine's last words when it failed.</summary>
public sealed record VmExit(VmExitReason Reason, string? Detail = null)
{
    public bool IsClean => Reason is VmExitReason.GuestPoweredOff or VmExitReason.GuestRebooted or VmExitReason.StoppedByHost;
}

/// <summary>The engine cannot run here or failed to start; the message is one line.</summary>
public sealed class EngineException(string message, int exitCode = 1) : Exception(message), IUserError
{
    public int ExitCode { get; } = exitCode;
}
