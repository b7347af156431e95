using Lkrun.Spec;

namespace Lkrun.Services.Hosting;

/// <summary>How the engine's console devices reach lkrun's console relay.</summary>
public enum ConsoleTransport
{
    /// <summary>The relay listens on <c>ttyS0.sock</c> and <c>hvc0.sock</c>; the engine connects a serial port and a virtio console to them (QEMU's chardev sockets).</summary>
    ListeningSockets,

    /// <summary>One serial port, given one end of a connected socket pair (a file-handle serial attachment).</summary>
    SocketPair,
}

/// <summary>How the engine's virtio-vsock device reaches lkrun's vsock front end.</summary>
public enum VsockTransport
{
    /// <summary>lkrun is the device: a vhost-user backend on <c>vsock.sock</c> (QEMU's vhost-user-vsock).</summary>
    VhostUser,

    /// <summary>
    /// The engine's own device hands over one connected descriptor per stream (Virtualization.framework's
    /// VZVirtioSocketDevice); the engine gives lkrun the device once the VM exists.
    /// </summary>
    Streams,
}

/// <summary>How the engine's network device exchanges Ethernet frames with lkrun's NAT network.</summary>
public enum NetworkLink
{
    /// <summary>lkrun listens on <c>net.sock</c>, a unix stream socket, each frame after its length (QEMU's <c>-netdev stream</c>).</summary>
    Stream,

    /// <summary>
    /// Unix datagram sockets, one frame per datagram: lkrun binds <c>net.sock</c> and the device binds
    /// <c>net-device.sock</c> (QEMU's <c>-netdev dgram</c>).
    /// </summary>
    DatagramPaths,

    /// <summary>A connected pair of unix datagram sockets, one end for the device (a file-handle network attachment).</summary>
    DatagramSocketPair,
}

/// <summary>How the engine's virtio-fs devices reach the host directories they share.</summary>
public enum SharedDirectoryTransport
{
    /// <summary>lkrun runs one virtiofsd per share, a vhost-user backend on <c>virtiofsN.sock</c> (QEMU's vhost-user-fs).</summary>
    VhostUser,
}

/// <summary>
/// The host services an engine's plan needs, and over which transports its devices reach them. The metadata CD
/// and the kernel are prepared for every engine: a gzip-compressed kernel is inflated, and with an
/// <paramref name="X86KernelEntry"/> an x86 kernel is prepared for that entry (<see cref="Boot.KernelBoot"/>: the
/// decompressed ELF from the per-user cache for PVH). <paramref name="Network"/> is null when lkrun runs no network
/// for the VM (<c>-networking none</c>, or a network the engine brings itself). <paramref name="SharedDirectories"/>
/// is null when the VM has no <c>-virtiofs</c> shares or the engine serves them itself (Virtualization.framework's
/// VZVirtioFileSystemDeviceConfiguration).
/// </summary>
public sealed record HostServiceNeeds(
    ConsoleTransport Console, VsockTransport Vsock, NetworkLink? Network, KernelEntry? X86KernelEntry, SharedDirectoryTransport? SharedDirectories = null)
{
    /// <summary>The largest frame the engine's network device takes, which lkrun's DHCP hands the guest as its MTU.</summary>
    public int NetworkMtu { get; init; } = NatSubnet.Mtu;
}
