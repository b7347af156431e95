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

    /// <summary>
    /// Bytes a stream transport moves per receive, in each direction of a stream (a packet's largest payload);
    /// with <see cref="MaxConnections"/> it bounds the relays' buffers to 128 MiB.
    /// </summary>
    public const int StreamCopyBufferSize = MaxPacketPayload;

    /// <summary>
    /// How often a stream transport looks for 00000002.PPPPPPPP sockets that appeared or went away: a new host
    /// listener is reachable from the guest within this time.
    /// </summary>
    public static readonly TimeSpan HostListenerRescan = TimeSpan.FromMilliseconds(250);

    /// <summary>The service name under which <see cref="Faults.FaultInjection"/> fails the transports' workers.</summary>
    public const string FaultService = "vsock";

    /// <summary>The one line a transport that failed on its own faults its Completion with, naming the service.</summary>
    public static IOException Stopped(Exception cause) => new($"the vsock device stopped: {cause.Message}", cause);
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
/// (<see cref="VsockDevice"/>, Linux only) or a hypervisor that hands over one connected descriptor per stream
/// (<see cref="VsockStreamTransport"/>, Virtualization.framework). A transport serves one front end from its
/// <c>Start</c> until <see cref="IAsyncDisposable.DisposeAsync"/>, which stops every stream and leaves the front
/// end to its owner.
/// </summary>
public interface IVsockTransport : IAsyncDisposable
{
    /// <summary>
    /// Completes once the transport stopped after <see cref="IAsyncDisposable.DisposeAsync"/>; faults as soon as it
    /// fails on its own (its worker died), with an <see cref="IOException"/> whose message is one line naming the
    /// service and the cause (<c>the vsock device stopped: ...</c>), so that its owner can stop the VM and say why.
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

/// <summary>
/// One vsock stream as a hypervisor hands it over: a connected stream socket and the object that owns it
/// (Virtualization.framework's <c>VZVirtioSocketConnection</c>). The transport holds it while the stream is in
/// use and disposes it exactly once when the stream ends, whichever side ended it, or at once when it refuses
/// it. Dispose closes the descriptor and releases the framework's object (<c>[connection close]</c>, then the
/// reference); it is called on a thread-pool thread or inside a <see cref="GuestConnectionHandler"/>, and must
/// not wait for the framework's queue.
/// </summary>
public interface IGuestStream : IDisposable
{
    /// <summary>
    /// The connected descriptor (<c>VZVirtioSocketConnection.fileDescriptor</c>). It stays this object's: the
    /// transport works on a duplicate and never closes this number itself.
    /// </summary>
    int FileDescriptor { get; }
}

/// <summary>
/// The answer to <see cref="IGuestSocketDevice.Connect"/>: the stream, or the framework's error (exactly one of
/// them is non-null).
/// </summary>
public delegate void GuestConnectCompletion(IGuestStream? stream, Exception? error);

/// <summary>
/// A guest connected to a port the transport listens on. Returns true when the transport takes the stream, false
/// when it refuses it (the framework then resets the guest's connection: return the value from the listener
/// delegate's <c>shouldAcceptNewConnection</c>). Either way the transport owns <paramref name="stream"/> from this
/// call on and disposes it. Returns at once: it only connects a nonblocking unix socket and schedules the relay.
/// </summary>
public delegate bool GuestConnectionHandler(IGuestStream stream);

/// <summary>
/// The hypervisor's virtio socket device as <see cref="VsockStreamTransport"/> uses it, shaped after
/// Virtualization.framework's <c>VZVirtioSocketDevice</c>; the engine implements it over the framework, tests over
/// socket pairs.
/// <para>
/// Threading: the transport calls these methods from its own threads (thread-pool threads, never from inside a
/// callback) and expects them to return at once; an implementation over the framework dispatches each call
/// asynchronously onto the virtual machine's queue. The callbacks may arrive on any thread, the framework's queue
/// included; the transport never blocks in them.
/// </para>
/// </summary>
public interface IGuestSocketDevice
{
    /// <summary>
    /// Asks the guest for a stream to its port <paramref name="port"/> (<c>connectToPort:completionHandler:</c>).
    /// <paramref name="completed"/> runs at most once, with the stream or the error. It may never run: the
    /// framework does nothing when the guest does not listen, so the transport gives up after its connect timeout
    /// and disposes a stream that arrives later.
    /// </summary>
    void Connect(uint port, GuestConnectCompletion completed);

    /// <summary>
    /// Accepts guest connections to host port <paramref name="port"/> from now on and hands each to
    /// <paramref name="accepted"/> (<c>setSocketListener:forPort:</c> with a listener whose delegate calls it). Not
    /// called twice for a port without <see cref="StopListening"/> in between.
    /// </summary>
    void Listen(uint port, GuestConnectionHandler accepted);

    /// <summary>Refuses guest connections to host port <paramref name="port"/> from now on (<c>removeSocketListenerForPort:</c>).</summary>
    void StopListening(uint port);
}
