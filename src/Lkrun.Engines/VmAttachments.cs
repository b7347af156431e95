using Lkrun.Services.Boot;
using Lkrun.Services.Network;

namespace Lkrun.Engines;

/// <summary>
/// What the host services prepared for the VM before it starts: the engine wires these endpoints and files into
/// the VM it builds, and owns none of them, except the control socket, which it listens on itself.
/// </summary>
public sealed record VmAttachments
{
    /// <summary>The VM's identity (DMI product UUID).</summary>
    public required Guid Uuid { get; init; }

    /// <summary>
    /// The kernel to boot when the boot source has one (the image's own, an inflated copy, or its decompressed ELF),
    /// with what it offers the machine.
    /// </summary>
    public BootKernel? Kernel { get; init; }

    /// <summary>The metadata CD image (ISO9660, label CIDATA), when the VM has metadata.</summary>
    public string? MetadataIso { get; init; }

    /// <summary>The vhost-user socket of the VM's virtio-vsock device, listening before the VM starts.</summary>
    public string? VsockSocket { get; init; }

    /// <summary>Listening unix sockets for the serial console and the virtio console, in that order.</summary>
    public required string SerialConsoleSocket { get; init; }

    public required string VirtioConsoleSocket { get; init; }

    /// <summary>Where the engine listens for its control connection (QMP for QEMU).</summary>
    public required string ControlSocket { get; init; }

    /// <summary>Where the engine writes its own process id and diagnostics.</summary>
    public required string StateDirectory { get; init; }

    /// <summary>The guest's network interface; null when the VM has none (<c>-networking none</c>).</summary>
    public GuestNetwork? Network { get; init; }
}
