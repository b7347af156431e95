using Lkrun.Spec;

namespace Lkrun.Control;

/// <summary>The power state of a running VM as the control API reports it.</summary>
public enum VmPowerState
{
    Running,
    Paused,
    Stopping,
    Stopped,
}

/// <summary>What the control API can see and do to the VM of this lkrun.</summary>
public interface IVmControl
{
    VmPowerState PowerState { get; }

    /// <summary>Whether the engine can pause the VM; the API answers Pause and Resume with 501 when not.</summary>
    bool CanPause { get; }

    /// <summary>What the VM is: its resources, devices, name, address, published ports and vsock sockets.</summary>
    VmInspection Inspect();

    /// <summary>Asks for a clean stop: the power button, pressed until the guest powers off or <paramref name="timeout"/> (default: the VM's <c>-stop-timeout</c>) ends.</summary>
    void Stop(TimeSpan? timeout);

    /// <summary>Stops the VM at once.</summary>
    void StopHard();

    Task PauseAsync(CancellationToken cancellation);

    Task ResumeAsync(CancellationToken cancellation);

    IReadOnlyList<PublishedPort> PublishedPorts { get; }

    /// <summary>Publishes a port given as <c>-publish</c> takes it; a <see cref="IUserError"/> when it cannot.</summary>
    Task<PublishedPort> PublishAsync(string flagValue, CancellationToken cancellation);

    Task UnpublishAsync(PublishedPort port, CancellationToken cancellation);
}
