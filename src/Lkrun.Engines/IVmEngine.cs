using Lkrun.Services.Hosting;
using Lkrun.Services.Power;
using Lkrun.Spec;

namespace Lkrun.Engines;

/// <summary>A way to run VMs: QEMU, or macOS's Virtualization.framework.</summary>
public interface IVmEngine
{
    /// <summary>
    /// Checks that this host can run <paramref name="spec"/> and that the engine supports everything it asks for,
    /// resolving binaries, firmware and machine; creates nothing and prints nothing. Throws
    /// <see cref="EngineException"/> (or <see cref="SpecException"/> for a flag the engine cannot honour).
    /// </summary>
    IVmPlan Prepare(VmSpec spec);
}

/// <summary>An engine's immutable plan for one VM: everything resolved. Starting it is the only step with effects.</summary>
public interface IVmPlan
{
    /// <summary>The host services the VM needs, and over which transports its devices reach them.</summary>
    HostServiceNeeds Services { get; }

    /// <summary>Lines for the user once the VM is about to start (software emulation, say).</summary>
    IReadOnlyList<string> Notices { get; }

    /// <summary>Starts the VM wired to <paramref name="attachments"/>; an <see cref="EngineException"/> when it cannot.</summary>
    Task<IRunningVm> StartAsync(VmAttachments attachments, CancellationToken cancellation);
}

public interface IRunningVm : IPowerControl, IAsyncDisposable
{
    /// <summary>How the VM ended; completes when <see cref="IPowerControl.Stopped"/> does.</summary>
    Task<VmExit> Exit { get; }

    /// <summary>Whether the engine can pause this VM; one that cannot throws <see cref="NotSupportedException"/> from pause and resume.</summary>
    bool CanPause => false;

    /// <summary>True while the VM is paused.</summary>
    bool IsPaused => false;

    /// <summary>Freezes the VM's CPUs; its devices and its memory stay as they are until <see cref="ResumeAsync"/>.</summary>
    Task PauseAsync(CancellationToken cancellation) => throw new NotSupportedException("this engine cannot pause a VM");

    /// <summary>Lets a paused VM run on.</summary>
    Task ResumeAsync(CancellationToken cancellation) => throw new NotSupportedException("this engine cannot pause a VM");
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
