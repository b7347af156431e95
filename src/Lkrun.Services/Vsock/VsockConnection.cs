using Lkrun.Services.Interop;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Vsock;

/// <summary>
/// Where a connection is in its life. Every change goes through <see cref="VsockConnection"/>'s one transition
/// switch.
/// </summary>
internal enum ConnectionState
{
    /// <summary>A host program connected to guest.PORT; our REQUEST is pending or sent, the guest has not answered.</summary>
    LocalInit,

    /// <summary>The guest asked to connect and the host socket is connected; our RESPONSE has not gone out yet.</summary>
    PeerInit,

    /// <summary>Data flows both ways; either side may have half-closed (see the shutdown flags).</summary>
    Established,

    /// <summary>The host side is gone: we sent SHUTDOWN both ways and wait for the guest's RST.</summary>
    LocalClosed,

    /// <summary>The guest shut down both ways: we deliver what we hold to the host, then reset.</summary>
    PeerClosed,

    /// <summary>Over: the host socket is closed; at most a final RST is still to be sent.</summary>
    Killed,
}

/// <summary>Packets a connection owes the guest, sent as receive buffers become available.</summary>
[Flags]
internal enum PendingReplies
{
    None = 0,
    Request = 1,
    Response = 2,
    Shutdown = 4,
    CreditUpdate = 8,
    Reset = 16,
}

/// <summary>What a connection tells its muxer after it changed.</summary>
internal interface IConnectionOwner
{
    /// <summary>Reschedules the connection: receive work, deadline, or removal once it is killed and owes nothing.</summary>
    void Changed(VsockConnection connection);

    /// <summary>Milliseconds on the muxer's clock.</summary>
    long Now { get; }
}

/// <summary>
/// One vsock stream between a guest port and a host unix socket.
/// <para>
/// Handshake: REQUEST from the connecting side, RESPONSE (accept) or RST (refuse) from the other. Teardown: a
/// SHUTDOWN carries "will not receive" (1) and/or "will not send" (2); a side that received both flags and has
/// nothing left answers RST, which ends the connection. A host shutdown(SHUT_WR) becomes SHUTDOWN(send); a guest
/// SHUTDOWN(send) becomes shutdown(SHUT_WR) on the host socket once buffered bytes are delivered.
/// </para>
/// <para>
/// Credit: each side announces buf_alloc (its receive buffer) and fwd_cnt (bytes it has consumed) in every
/// header. A sender may have at most buf_alloc - (sent - peer's fwd_cnt) bytes in flight. Towards the guest this
/// bounds what is read from the host socket; from the guest, our buf_alloc is <see cref="TransmitBuffer"/>'s
/// capacity, so bytes a slow host reader leaves behind always fit, and fwd_cnt grows only as the host socket takes
/// them. A guest that sends beyond its credit is reset. Unsigned wrapping arithmetic is intended throughout.
/// </para>
/// </summary>
internal sealed class VsockConnection : IEventHandler
{
    private const int MaxIovecs = 16;

    private readonly IConnectionOwner _owner;
    private readonly ulong _guestCid;
    private readonly TransmitBuffer _transmit = new(VsockLimits.ConnectionBufferSize);
    private FileDescriptor? _socket;
    private EventRegistration? _registration;

    private uint _forwardCount;
    private uint _announcedForwardCount;
    private uint _receivedFromGuest;
    private uint _sentToGuest;
    private uint _peerBufferAllocation;
    private uint _peerForwardCount;

    private VsockShutdown _peerShutdown;
    private bool _hostReadable;
    private bool _hostEndOfStream;
    private bool _hostHungUp;
    private bool _hostWriteShut;

    private VsockConnection(IConnectionOwner owner, ulong guestCid, uint localPort, uint peerPort, FileDescriptor socket, ConnectionState state, PendingReplies pending)
    {
        _owner = owner;
        _guestCid = guestCid;
        LocalPort = localPort;
        PeerPort = peerPort;
        _socket = socket;
        State = state;
        Pending = pending;
    }

    /// <summary>A host program connected to guest.<paramref name="guestPort"/>: ask the guest.</summary>
    public static VsockConnection ForHostConnection(IConnectionOwner owner, EventLoop loop, ulong guestCid, uint localPort, uint guestPort, FileDescriptor socket)
    {
        var connection = new VsockConnection(owner, guestCid, localPort, guestPort, socket, ConnectionState.LocalInit, PendingReplies.Request)
        {
            Deadline = owner.Now + (long)VsockLimits.ConnectTimeout.TotalMilliseconds,
        };
        connection._registration = loop.Register(socket.Number, 0, connection);
        return connection;
    }

    /// <summary>The guest's REQUEST reached a host listener: accept it.</summary>
    public static VsockConnection ForGuestRequest(IConnectionOwner owner, EventLoop loop, ulong guestCid, in VsockHeader request, FileDescriptor socket)
    {
        var connection = new VsockConnection(owner, guestCid, request.DestinationPort, request.SourcePort, socket, ConnectionState.PeerInit, PendingReplies.Response);
        connection.UpdatePeerCredit(request);
        connection._registration = loop.Register(socket.Number, 0, connection);
        return connection;
    }

    /// <summary>The host side's port (ours, or the one the guest connected to).</summary>
    public uint LocalPort { get; }

    /// <summary>The guest side's port.</summary>
    public uint PeerPort { get; }

    public ulong Key => Keys.Of(LocalPort, PeerPort);

    public ConnectionState State { get; private set; }

    public PendingReplies Pending { get; private set; }

    /// <summary>When the guest must have answered (connect or close), on the owner's clock; 0 for none.</summary>
    public long Deadline { get; private set; }

    /// <summary>Kept by the muxer: the connection is in its receive queue.</summary>
    public bool QueuedForReceive { get; set; }

    /// <summary>Kept by the muxer: the deadline it last queued for this connection.</summary>
    public long ScheduledDeadline { get; set; }

    /// <summary>Kept by the muxer: the connection left its table.</summary>
    public bool Removed { get; set; }

    /// <summary>Bytes of guest data waiting for the host socket.</summary>
    public int BufferedForHost => _transmit.Count;

    /// <summary>How many more bytes the guest can take on this connection.</summary>
    public int PeerCredit
    {
        get
        {
            var inFlight = (long)(uint)(_sentToGuest - _peerForwardCount);
            return (int)Math.Clamp(_peerBufferAllocation - inFlight, 0, int.MaxValue);
        }
    }

    /// <summary>True when a receive buffer would be used: a reply is owed or host bytes can go to the guest.</summary>
    public bool HasReceiveWork => Pending != PendingReplies.None || (_hostReadable && CanReadHost);

    private bool CanReadHost =>
        State == ConnectionState.Established
        && _socket is not null
        && !_hostEndOfStream
        && (_peerShutdown & VsockShutdown.Receive) == 0
        && PeerCredit > 0;

    /// <summary>A packet from the guest for this connection, already validated by <see cref="VsockPacket"/>.</summary>
    public void OnGuestPacket(in VsockHeader header, DescriptorChain chain)
    {
        if (State == ConnectionState.Killed)
        {
            return;
        }

        UpdatePeerCredit(header);
        switch (header.Op)
        {
            case VsockOp.Response when State == ConnectionState.LocalInit:
                Transition(ConnectionState.Established);
                break;

            case VsockOp.Reset:
                Pending = PendingReplies.None;
                Transition(ConnectionState.Killed);
                break;

            case VsockOp.Shutdown:
                OnPeerShutdown((VsockShutdown)header.Flags & VsockShutdown.Both);
                break;

            case VsockOp.ReadWrite:
                OnGuestData(header, chain);
                break;

            case VsockOp.CreditUpdate:
                break;

            case VsockOp.CreditRequest:
                Pending |= PendingReplies.CreditUpdate;
                break;

            default:
                // A second REQUEST, or a RESPONSE we did not ask for.
                Reset();
                break;
        }

        Changed();
    }

    /// <summary>Host socket readiness, from the event loop.</summary>
    public void OnEvents(uint events)
    {
        if (State == ConnectionState.Killed || _socket is null)
        {
            return;
        }

        if ((events & EventLoop.Error) != 0)
        {
            Reset();
        }
        else
        {
            if ((events & EventLoop.HangUp) != 0)
            {
                OnHostHangUp();
            }
            else if ((events & EventLoop.Readable) != 0)
            {
                _hostReadable = true;
            }

            if ((events & EventLoop.Writable) != 0 || (_hostHungUp && !_transmit.IsEmpty))
            {
                FlushToHost();
            }
        }

        Changed();
    }

    /// <summary>
    /// Writes the next packet this connection owes the guest into a receive chain (at least a header's worth of
    /// writable bytes, nothing readable). Returns the bytes written, or 0 when there was nothing to send after all.
    /// </summary>
    public int WriteReceivePacket(DescriptorChain chain)
    {
        var written = NextReceivePacket(chain);
        Changed();
        return written;
    }

    /// <summary>The guest did not answer in time.</summary>
    public void OnDeadline(long now)
    {
        if (Deadline == 0 || now < Deadline)
        {
            return;
        }

        Deadline = 0;
        if (State is ConnectionState.LocalInit or ConnectionState.LocalClosed)
        {
            Reset();
            Changed();
        }
    }

    /// <summary>Ends the connection without telling the guest (its rings are gone).</summary>
    public void Abort()
    {
        Pending = PendingReplies.None;
        if (State != ConnectionState.Killed)
        {
            Transition(ConnectionState.Killed);
        }
    }

    /// <summary>The guest sent a packet for this connection that broke the protocol.</summary>
    public void ResetForBadPacket()
    {
        Reset();
        Changed();
    }

    /// <summary>Resets the connection: the host socket closes and the guest gets an RST.</summary>
    private void Reset()
    {
        // A request the guest never saw (still owed to it) needs no reset.
        Pending = State == ConnectionState.LocalInit && (Pending & PendingReplies.Request) != 0 ? PendingReplies.None : PendingReplies.Reset;
        if (State != ConnectionState.Killed)
        {
            Transition(ConnectionState.Killed);
        }
    }

    private void Transition(ConnectionState next)
    {
        switch (State, next)
        {
            case (ConnectionState.LocalInit, ConnectionState.Established):
                Deadline = 0;
                Pending &= ~PendingReplies.Request;
                break;

            case (ConnectionState.PeerInit, ConnectionState.Established):
                break;

            case (ConnectionState.Established, ConnectionState.PeerClosed):
                // Nothing more is read from the host; what the guest sent still goes out before the reset.
                _hostReadable = false;
                break;

            case (ConnectionState.Established, ConnectionState.LocalClosed):
                Pending = (Pending & ~PendingReplies.CreditUpdate) | PendingReplies.Shutdown;
                CloseHostSocket();
                Deadline = _owner.Now + (long)VsockLimits.CloseTimeout.TotalMilliseconds;
                break;

            case (not ConnectionState.Killed, ConnectionState.Killed):
                CloseHostSocket();
                Deadline = 0;
                break;

            default:
                throw new InvalidOperationException($"vsock connection {LocalPort}<->{PeerPort}: no transition from {State} to {next}");
        }

        State = next;
    }

    private void OnPeerShutdown(VsockShutdown flags)
    {
        switch (State)
        {
            case ConnectionState.Established:
                _peerShutdown |= flags;
                if (_peerShutdown == VsockShutdown.Both)
                {
                    Transition(ConnectionState.PeerClosed);
                }

                AfterTransmitDrained();
                break;

            case ConnectionState.LocalClosed when flags == VsockShutdown.Both:
                // Both sides have closed; the guest waits for our reset.
                Reset();
                break;

            case ConnectionState.LocalClosed:
            case ConnectionState.PeerClosed:
                break;

            default:
                Reset();
                break;
        }
    }

    private void OnGuestData(in VsockHeader header, DescriptorChain chain)
    {
        if (State == ConnectionState.LocalClosed)
        {
            // The host reader is gone; the guest learns it from our SHUTDOWN.
            return;
        }

        if (State != ConnectionState.Established || (_peerShutdown & VsockShutdown.Send) != 0)
        {
            Reset();
            return;
        }

        var length = (int)header.Length;
        _receivedFromGuest += (uint)length;
        long offset = VsockLimits.HeaderSize;
        if (_transmit.IsEmpty && _socket is not null)
        {
            Span<LibC.Iovec> iovecs = stackalloc LibC.Iovec[MaxIovecs];
            while (length > 0)
            {
                var (count, bytes) = chain.FillIovecs(writable: false, offset, length, iovecs);
                var sent = UnixSocket.SendVectors(_socket.Number, iovecs[..count]);
                if (!AccountSent(sent))
                {
                    return;
                }

                if (sent <= 0)
                {
                    break;
                }

                offset += sent;
                length -= (int)sent;
                if (sent < bytes)
                {
                    break;
                }
            }
        }

        if (length > 0 && !_transmit.TryAppend(chain, offset, length))
        {
            // More than the credit we gave: the guest broke flow control.
            Reset();
            return;
        }

        ConsiderCreditUpdate();
    }

    /// <summary>
    /// Counts what a send to the host socket forwarded (nothing when it would block). Any other error resets the
    /// connection, since the host program closed or reset its socket and the guest's bytes have nowhere to go;
    /// false then.
    /// </summary>
    private bool AccountSent(nint sent)
    {
        if (sent < 0 && sent != -LibC.EAGAIN)
        {
            Reset();
            return false;
        }

        if (sent > 0)
        {
            _forwardCount += (uint)sent;
        }

        return true;
    }

    private void FlushToHost()
    {
        if (_socket is null || _transmit.IsEmpty)
        {
            return;
        }

        var written = _transmit.WriteTo(_socket.Number);
        if (!AccountSent(written))
        {
            return;
        }

        if (written > 0)
        {
            ConsiderCreditUpdate();
        }

        if (_transmit.IsEmpty)
        {
            AfterTransmitDrained();
        }
    }

    /// <summary>Acts on the guest's shutdown once everything it sent before it reached the host.</summary>
    private void AfterTransmitDrained()
    {
        if (!_transmit.IsEmpty || _socket is null)
        {
            return;
        }

        if (State == ConnectionState.PeerClosed)
        {
            Reset();
            return;
        }

        if ((_peerShutdown & VsockShutdown.Send) != 0 && !_hostWriteShut)
        {
            _hostWriteShut = true;
            LibC.shutdown(_socket.Number, LibC.SHUT_WR);
        }
    }

    /// <summary>
    /// Schedules a CREDIT_UPDATE once the guest has used half its credit and at least a quarter of its window has
    /// been freed since the last announcement (or all of it: everything reached the host). The update then
    /// arrives while the guest still has half a window to send, so a fast sender does not stall for it, yet
    /// updates stay rare (each costs the guest an interrupt and a receive buffer) and never hand out slivers of
    /// credit while the host reads slowly. The window is what the guest can really use: Linux caps
    /// its credit at its own buf_alloc (which its headers carry), so a window taken from our buf_alloc alone
    /// could leave a guest with a smaller buffer waiting for an update that never comes.
    /// </summary>
    private void ConsiderCreditUpdate()
    {
        var window = _peerBufferAllocation == 0
            ? VsockLimits.ConnectionBufferSize
            : Math.Min(VsockLimits.ConnectionBufferSize, _peerBufferAllocation);
        var guestViewCredit = window - (long)(uint)(_receivedFromGuest - _announcedForwardCount);
        var freed = (long)(uint)(_forwardCount - _announcedForwardCount);
        var everythingDelivered = _forwardCount == _receivedFromGuest;
        if (freed > 0
            && guestViewCredit < window / 2
            && (freed >= window / 4 || everythingDelivered))
        {
            Pending |= PendingReplies.CreditUpdate;
        }
    }

    private void OnHostHangUp()
    {
        _hostHungUp = true;
        // Hang-up is reported whatever we watch, so stop watching; what is left to read is read until end of stream.
        _registration?.Dispose();
        _registration = null;
        switch (State)
        {
            case ConnectionState.LocalInit:
                Reset();
                break;

            case ConnectionState.Established when _hostEndOfStream:
                Transition(ConnectionState.LocalClosed);
                break;

            default:
                _hostReadable = true;
                break;
        }
    }

    private int NextReceivePacket(DescriptorChain chain)
    {
        if ((Pending & PendingReplies.Reset) != 0)
        {
            Pending = PendingReplies.None;
            return WriteHeader(chain, VsockOp.Reset, 0, 0);
        }

        switch (State)
        {
            case ConnectionState.LocalInit when (Pending & PendingReplies.Request) != 0:
                Pending &= ~PendingReplies.Request;
                return WriteHeader(chain, VsockOp.Request, 0, 0);

            case ConnectionState.LocalInit:
                // Until the guest accepts, nothing but the request (or a reset) is owed.
                Pending = PendingReplies.None;
                return 0;

            case ConnectionState.PeerInit when (Pending & PendingReplies.Response) != 0:
                Pending &= ~PendingReplies.Response;
                Transition(ConnectionState.Established);
                return WriteHeader(chain, VsockOp.Response, 0, 0);

            case ConnectionState.Killed:
                Pending = PendingReplies.None;
                return 0;
        }

        if (_hostReadable && CanReadHost)
        {
            var written = ReadHostData(chain);
            if (written != 0)
            {
                return written;
            }
        }

        if ((Pending & PendingReplies.Shutdown) != 0)
        {
            // Owed only once the host socket closed (LocalClosed): neither side sends any more.
            Pending &= ~PendingReplies.Shutdown;
            return WriteHeader(chain, VsockOp.Shutdown, 0, (uint)VsockShutdown.Both);
        }

        if ((Pending & PendingReplies.CreditUpdate) != 0)
        {
            return WriteHeader(chain, VsockOp.CreditUpdate, 0, 0);
        }

        return 0;
    }

    /// <summary>Reads host bytes straight into the guest's buffer, within its credit. End of stream becomes SHUTDOWN.</summary>
    private int ReadHostData(DescriptorChain chain)
    {
        var room = (int)Math.Min(chain.WritableLength - VsockLimits.HeaderSize, VsockLimits.MaxPacketPayload);
        if (room == 0)
        {
            // A header-only buffer: use it to tell the guest about our buffer instead.
            return WriteHeader(chain, VsockOp.CreditUpdate, 0, 0);
        }

        var limit = Math.Min(room, PeerCredit);
        Span<LibC.Iovec> iovecs = stackalloc LibC.Iovec[MaxIovecs];
        var (count, bytes) = chain.FillIovecs(writable: true, VsockLimits.HeaderSize, limit, iovecs);
        var received = UnixSocket.ReceiveVectors(_socket!.Number, iovecs[..count]);
        if (received > 0)
        {
            // A short read means the socket is drained for now, unless the peer hung up: then only end of stream
            // is left, no event will announce it, and the next read must find it.
            if (received < bytes && !_hostHungUp)
            {
                _hostReadable = false;
            }

            _sentToGuest += (uint)received;
            return WriteHeader(chain, VsockOp.ReadWrite, (uint)received, 0);
        }

        _hostReadable = false;
        if (received == -LibC.EAGAIN)
        {
            return 0;
        }

        if (received < 0)
        {
            Reset();
            return 0;
        }

        // End of stream: the host program shut down its sending side, or closed altogether.
        _hostEndOfStream = true;
        var flags = _hostHungUp ? VsockShutdown.Both : VsockShutdown.Send;
        if (_hostHungUp)
        {
            Transition(ConnectionState.LocalClosed);
        }

        Pending &= ~PendingReplies.Shutdown;
        return WriteHeader(chain, VsockOp.Shutdown, 0, (uint)flags);
    }

    private int WriteHeader(DescriptorChain chain, VsockOp op, uint length, uint flags)
    {
        var header = new VsockHeader
        {
            SourceCid = VsockLimits.HostCid,
            DestinationCid = _guestCid,
            SourcePort = LocalPort,
            DestinationPort = PeerPort,
            Length = length,
            Type = VsockLimits.StreamType,
            Op = op,
            Flags = flags,
            BufferAllocation = VsockLimits.ConnectionBufferSize,
            ForwardCount = _forwardCount,
        };
        Span<byte> bytes = stackalloc byte[VsockLimits.HeaderSize];
        header.Write(bytes);
        chain.CopyToWritable(0, bytes);
        _announcedForwardCount = _forwardCount;
        Pending &= ~PendingReplies.CreditUpdate;
        return VsockLimits.HeaderSize + (int)length;
    }

    private void UpdatePeerCredit(in VsockHeader header)
    {
        _peerBufferAllocation = header.BufferAllocation;
        _peerForwardCount = header.ForwardCount;
    }

    private void Changed()
    {
        if (_registration is { } registration && _socket is not null)
        {
            var events = 0u;
            if (CanReadHost && !_hostReadable)
            {
                events |= EventLoop.Readable;
            }

            if (!_transmit.IsEmpty)
            {
                events |= EventLoop.Writable;
            }

            registration.Update(events);
        }

        _owner.Changed(this);
    }

    private void CloseHostSocket()
    {
        _registration?.Dispose();
        _registration = null;
        _socket?.Dispose();
        _socket = null;
        _transmit.Release();
        _hostReadable = false;
    }

    public override string ToString() => $"vsock {LocalPort}<->{PeerPort} {State}";
}

/// <summary>The connection table's key: host-side port and guest-side port.</summary>
internal static class Keys
{
    public static ulong Of(uint localPort, uint peerPort) => (ulong)localPort << 32 | peerPort;
}
