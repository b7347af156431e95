namespace Lkrun.Services.Power;

/// <summary>What the host can do to a running VM's power, whatever engine runs it.</summary>
public interface IPowerControl
{
    /// <summary>Completes when the VM has stopped, for whatever reason.</summary>
    Task Stopped { get; }

    /// <summary>Sends the guest an ACPI power-button event; a guest that handles it powers itself off.</summary>
    Task PressPowerButtonAsync(CancellationToken cancellation);

    /// <summary>Stops the VM at once, as pulling the plug would.</summary>
    Task StopHardAsync(CancellationToken cancellation);
}
