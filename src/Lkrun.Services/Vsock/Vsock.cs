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
