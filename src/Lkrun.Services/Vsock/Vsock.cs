using System.Net.Sockets;
using Lkrun.Services.Interop;

namespace Lkrun.Services.Vsock;

/// <summary>Packet operations of the virtio-vsock stream protocol.</summary>
internal enum VsockOp : ushort
{
    Invalid = 0,
    Request = 1,
    Response = 2,
    Reset = 3,
    Shutdown = 4,
    ReadWrite = 5,
    CreditUpdate = 6,
    CreditRequest = 7,
}

/// <summary>SHUTDOWN flags: the sender will receive no more (Receive) and/or send no more (Send).</summary>
[Flags]
internal enum VsockShutdown : uint
{
    None = 0,
    Receive = 1,
    Send = 2,
    Both = Receive | Send,
}

/// <summary>The fixed numbers of the device: addresses, sizes and limits, all checked before anything is allocated.</summary>
internal static class VsockLimits
{
    public const ulong HostCid = 2;

    /// <summary>VIRTIO_VSOCK_TYPE_STREAM, the only socket type offered (no SEQPACKET feature).</summary>
    public const ushort StreamType = 1;

    public const int HeaderSize = 44;

    /// <summary>The largest payload one packet may carry (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).</summary>
    public const int MaxPacketPayload = 64 * 1024;

    /// <summary>
    /// buf_alloc announced for every connection: how many guest bytes the device may hold for a host socket that
    /// is not reading. It bounds each connection's transmit buffer.
    /// </summary>
    public const int ConnectionBufferSize = 256 * 1024;

    /// <summary>With <see cref="ConnectionBufferSize"/>, bounds what slow host readers can make the device hold (256 MiB).</summary>
    public const int MaxConnections = 1024;

    /// <summary>Resets for packets that have no connection, waiting for a receive buffer; more stop the transmit queue.</summary>
    public const int MaxPendingResets = 256;

    /// <summary>Guest packets handled per pass before the receive side gets a turn.</summary>
    public const int TransmitBatch = 256;

    /// <summary>Host ports chosen for host-initiated connections start here, far above the ports guests listen on.</summary>
    public const uint FirstLocalPort = 1U << 30;

    /// <summary>How long used transmit buffers may wait for a batch before the guest is interrupted for them.</summary>
    public static readonly TimeSpan TransmitNotifyDelay = TimeSpan.FromMilliseconds(1);

    /// <summary>How long the guest may take to answer a connection request.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How long the guest may take to reset a connection whose host side closed (Linux waits 8 s itself).</summary>
    public static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The service name under which <see cref="Faults.FaultInjection"/> fails the transports' workers.</summary>
    public const string FaultService = "vsock";
}

/// <summary>Queue indexes of the virtio-vsock device.</summary>
internal static class VsockQueues
{
    public const int Receive = 0;
    public const int Transmit = 1;

    /// <summary>Device-to-driver events (transport reset); QEMU keeps this queue for itself, but a front-end may hand it over.</summary>
    public const int Event = 2;

    public const int Count = 3;
}

/// <summary>
/// How vsock streams reach the guest beneath <see cref="UnixSocketFrontEnd"/>: QEMU's vhost-user device
/// (<see cref="VsockDevice"/>, Linux only), or a hypervisor's own socket device. A transport serves one front end from its
/// <c>Start</c> until <see cref="IAsyncDisposable.DisposeAsync"/>, which stops every stream and leaves the front
/// end to its owner.
/// </summary>
public interface IVsockTransport : IAsyncDisposable
{
    /// <summary>
    /// Completes once the transport stopped after <see cref="IAsyncDisposable.DisposeAsync"/>; faults, with the
    /// cause, as soon as it fails on its own (its worker died), so that its owner can stop the VM and say why.
    /// </summary>
    Task Completion { get; }
}

/// <summary>What the front end hands the transport that serves it.</summary>
internal interface IGuestConnector
{
    /// <summary>
    /// A host program connected to <c>guest.PPPPPPPP</c>: ask the guest for port <paramref name="guestPort"/> and
    /// relay, or close <paramref name="connection"/> when the guest refuses or does not answer in time. The
    /// transport owns the socket from here. Called on the front end's accept loops (thread-pool threads); must
    /// neither block nor throw.
    /// </summary>
    void ConnectToGuest(uint guestPort, Socket connection);
}

/// <summary>How the muxer opens host unix sockets for guest-initiated connections (on the device's loop thread).</summary>
internal interface IHostConnector
{
    /// <summary>Connects to the host listener for <paramref name="port"/>; null when none takes the connection.</summary>
    FileDescriptor? TryConnect(uint port);
}
