using System.Net.Sockets;
using Lkrun.Services.Boot;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.State;
using Lkrun.Services.Vsock;

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
    public IReadOnlyList<string> ConsoleSockets { get; init; } = [];

    /// <summary>The engine's end of the console (<see cref="ConsoleTransport.SocketPair"/>): it reads the user's input and writes the guest's output.</summary>
    public SafeSocketHandle? ConsoleSocket { get; init; }

    /// <summary>The vhost-user socket of the VM's virtio-vsock device (<see cref="VsockTransport.VhostUser"/>), listening before the VM starts.</summary>
    public string? VsockSocket { get; init; }

    /// <summary>
    /// Where the engine hands over its vsock device once the VM exists (<see cref="VsockTransport.Streams"/>); until
    /// then, host connections to <c>guest.PPPPPPPP</c> are closed at once.
    /// </summary>
    public IGuestSocketsAttachment? GuestSockets { get; init; }

    /// <summary>The guest's interface on lkrun's network; null when lkrun runs none for the VM.</summary>
    public GuestNetwork? Network { get; init; }

    /// <summary>The device's end of the network link (<see cref="NetworkLink.DatagramSocketPair"/>).</summary>
    public SafeSocketHandle? NetworkDevice { get; init; }

    /// <summary>The interface's stable MAC address (<c>STATE/mac</c>), whenever the VM has an interface.</summary>
    public MacAddress? Mac { get; init; }

    /// <summary>The vhost-user sockets of the <c>-virtiofs</c> shares (<see cref="SharedDirectoryTransport.VhostUser"/>), in the order of the shares.</summary>
    public IReadOnlyList<SharedDirectoryAttachment> SharedDirectories { get; init; } = [];
}

/// <summary>Takes an engine's vsock device once the VM exists, and serves the <c>guest.PPPPPPPP</c> sockets through it.</summary>
public interface IGuestSocketsAttachment
{
    void Attach(IGuestSocketDevice device);
}

/// <summary>The share the guest mounts by <paramref name="Tag"/>, served on <paramref name="Socket"/>, which listens before the VM starts.</summary>
public sealed record SharedDirectoryAttachment(string Tag, string Socket);
