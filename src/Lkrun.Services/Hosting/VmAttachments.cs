using Lkrun.Services.Boot;
using Lkrun.Services.Network;
using Lkrun.Services.State;

namespace Lkrun.Services.Hosting;

/// <summary>
/// What the host services prepared for the VM, for the engine to wire into the VM it builds. The engine owns none
/// of it: the services outlive the VM and clean up after it.
/// </summary>
public sealed record VmAttachments
{
    /// <summary>The VM's identity (DMI product UUID, metadata instance-id, network lease).</summary>
    public required Guid Uuid { get; init; }

    /// <summary>The VM's state dir, where the engine keeps its own files (pid, log, control socket, EFI variables).</summary>
    public required StateLayout State { get; init; }

    /// <summary>
    /// The kernel to boot when the boot source has one, in the form the plan asked for, with what it offers the
    /// machine.
    /// </summary>
    public BootKernel? Kernel { get; init; }

    /// <summary>The metadata CD image (ISO 9660, label CIDATA), when the VM has metadata.</summary>
    public string? MetadataIso { get; init; }

    /// <summary>Where the engine's console devices connect (<see cref="ConsoleTransport.ListeningSockets"/>): serial first, then virtio.</summary>
    public required IReadOnlyList<string> ConsoleSockets { get; init; }

    /// <summary>The vhost-user socket of the VM's virtio-vsock device (<see cref="VsockTransport.VhostUser"/>), listening before the VM starts.</summary>
    public string? VsockSocket { get; init; }

    /// <summary>The guest's network interface; null when the VM has none.</summary>
    public GuestNetwork? Network { get; init; }
}
