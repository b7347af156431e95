using Lkrun.Services.Interop;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Vsock;

/// <summary>
/// Multiplexes every vsock connection over the device's receive and transmit queues, on the event loop's thread.
/// <para>
/// Connections are not threads: each host socket is a nonblocking descriptor in the shared epoll set, watched
/// for reading only while the guest has credit and no receive buffer is already promised to it, and for writing
/// only while guest bytes wait in its bounded transmit buffer. A connection with something for the guest (a
/// reply or readable host bytes) waits once in a FIFO; receive buffers are handed out in that order, so one busy
/// connection cannot starve the others. Packets that belong to no connection are answered with resets from a
/// bounded queue; when it is full the transmit queue is not read until it drains.
/// </para>
/// </summary>
internal sealed class VsockMuxer : IConnectionOwner
{
    private readonly ulong _guestCid;
    private readonly EventLoop _loop;
    private readonly IHostConnector _connector;
    private readonly Action<string>? _log;
    private readonly Func<long> _clock;
    private readonly Dictionary<ulong, VsockConnection> _connections = [];
    private readonly Queue<VsockConnection> _receiveQueue = new();
    private readonly Queue<VsockHeader> _resets = new();
    private readonly PriorityQueue<VsockConnection, long> _deadlines = new();
    private SplitVirtqueue? _receive;
    private SplitVirtqueue? _transmit;
    private uint _nextLocalPort = VsockLimits.FirstLocalPort;
    private long _transmitNotifyDue;
    private bool _transmitWaitsForResets;
    private bool _reportedBadPacket;
    private bool _reportedBrokenRing;

    public VsockMuxer(ulong guestCid, EventLoop loop, IHostConnector connector, Action<string>? log = null, Func<long>? clock = null)
    {
        _guestCid = guestCid;
        _loop = loop;
        _connector = connector;
        _log = log;
        _clock = clock ?? (() => Environment.TickCount64);
    }

    public long Now => _clock();

    public bool IsAttached => _receive is not null;

    public int ConnectionCount => _connections.Count;

    public IEnumerable<VsockConnection> Connections => _connections.Values;

    /// <summary>The guest driver is up: both queues run.</summary>
    public void Attach(SplitVirtqueue receive, SplitVirtqueue transmit)
    {
        _receive = receive;
        _transmit = transmit;
    }

    /// <summary>
    /// The queues stop (device reset, driver unloaded, front-end gone): publishes what was completed and drops
    /// every connection; the guest's side of them is gone with its rings.
    /// </summary>
    public void Detach()
    {
        _receive?.PublishUsed();
        _transmit?.PublishUsed();
        _transmitNotifyDue = 0;
        _transmitWaitsForResets = false;
        _receive = null;
        _transmit = null;
        foreach (var connection in _connections.Values)
        {
            connection.Removed = true;
            connection.Abort();
        }

        _connections.Clear();
        _receiveQueue.Clear();
        _resets.Clear();
        _deadlines.Clear();
    }

    /// <summary>A host program connected to guest.<paramref name="guestPort"/>.</summary>
    public void ConnectToGuest(uint guestPort, FileDescriptor socket)
    {
        if (!IsAttached || _connections.Count >= VsockLimits.MaxConnections)
        {
            // No driver to ask (or too many connections): closing at once tells the program promptly.
            socket.Dispose();
            return;
        }

        var localPort = NextLocalPort(guestPort);
        var connection = VsockConnection.ForHostConnection(this, _loop, _guestCid, localPort, guestPort, socket);
        _connections.Add(connection.Key, connection);
        Changed(connection);
    }

    /// <summary>
    /// Moves everything that can move: guest packets from the transmit queue, then packets for the guest into the
    /// receive queue; publishes both. Returns true when work was left for another pass.
    /// </summary>
    public bool Pump()
    {
        if (_receive is null || _transmit is null)
        {
            return false;
        }

        var more = ProcessTransmit(_transmit);
        ProcessReceive(_receive);

        // Guest packets that waited for room in the reset queue (their kicks were not asked for) go next pass.
        more |= _transmitWaitsForResets && _resets.Count < VsockLimits.MaxPendingResets;
        PublishTransmitted(force: false);
        _receive.PublishUsed();
        return more;
    }

    /// <summary>
    /// Returns transmitted buffers to the guest, interrupting it only for a batch of them or once they waited
    /// <see cref="VsockLimits.TransmitNotifyDelay"/>. The guest needs them back only to free their memory, never
    /// to make progress (credit comes through the receive queue), so each interrupt it takes is worth many packets.
    /// </summary>
    private void PublishTransmitted(bool force)
    {
        var transmit = _transmit!;
        transmit.PublishUsed(notify: false);
        if (transmit.UnnotifiedUsed == 0)
        {
            _transmitNotifyDue = 0;
            return;
        }

        if (force || transmit.UnnotifiedUsed >= transmit.Size / 4 || (_transmitNotifyDue != 0 && Now >= _transmitNotifyDue))
        {
            transmit.PublishUsed();
            _transmitNotifyDue = 0;
        }
        else if (_transmitNotifyDue == 0)
        {
            _transmitNotifyDue = Now + (long)VsockLimits.TransmitNotifyDelay.TotalMilliseconds;
        }
    }

    /// <summary>Milliseconds until the earliest deadline, or -1 when none is set.</summary>
    public int MillisecondsToNextDeadline()
    {
        var next = _transmitNotifyDue == 0 ? -1 : (int)Math.Clamp(_transmitNotifyDue - Now, 0, int.MaxValue);
        while (_deadlines.TryPeek(out var connection, out var deadline))
        {
            if (connection.Removed || connection.Deadline != deadline)
            {
                _deadlines.Dequeue();
                continue;
            }

            var untilDeadline = (int)Math.Clamp(deadline - Now, 0, int.MaxValue);
            return next == -1 ? untilDeadline : Math.Min(next, untilDeadline);
        }

        return next;
    }

    public void ExpireDeadlines()
    {
        var now = Now;
        if (_transmitNotifyDue != 0 && now >= _transmitNotifyDue && _transmit is not null)
        {
            PublishTransmitted(force: true);
        }

        while (_deadlines.TryPeek(out var connection, out var deadline) && deadline <= now)
        {
            _deadlines.Dequeue();
            if (!connection.Removed && connection.Deadline == deadline)
            {
                connection.OnDeadline(now);
            }
        }
    }

    public void Changed(VsockConnection connection)
    {
        if (connection.Removed)
        {
            return;
        }

        if (connection.State == ConnectionState.Killed && connection.Pending == PendingReplies.None)
        {
            connection.Removed = true;
            _connections.Remove(connection.Key);
            return;
        }

        if (connection.HasReceiveWork && !connection.QueuedForReceive)
        {
            connection.QueuedForReceive = true;
            _receiveQueue.Enqueue(connection);
        }

        if (connection.Deadline != 0 && connection.Deadline != connection.ScheduledDeadline)
        {
            connection.ScheduledDeadline = connection.Deadline;
            _deadlines.Enqueue(connection, connection.Deadline);
        }
    }

    private bool ProcessTransmit(SplitVirtqueue transmit)
    {
        var handled = 0;
        while (true)
        {
            if (handled == VsockLimits.TransmitBatch)
            {
                return true;
            }

            _transmitWaitsForResets = _resets.Count >= VsockLimits.MaxPendingResets;
            if (_transmitWaitsForResets)
            {
                // Resumes once receive buffers took some of the resets (see Pump).
                return false;
            }

            DescriptorChain chain;
            try
            {
                if (!transmit.TryPop(out chain))
                {
                    if (transmit.EnableNotifications())
                    {
                        continue;
                    }

                    return false;
                }
            }
            catch (VirtqueueException e)
            {
                Complain("transmit", e);
                if (transmit.IsBroken)
                {
                    return false;
                }

                continue;
            }

            handled++;
            HandleGuestPacket(chain);
            transmit.AddUsed(chain.Head, 0);
        }
    }

    private void HandleGuestPacket(DescriptorChain chain)
    {
        VsockHeader header;
        try
        {
            header = VsockPacket.ParseFromGuest(chain, _guestCid);
        }
        catch (VsockPacketException e)
        {
            Complain($"guest packet: {e.Message}");
            if (e.Header is { } bad && e.Error is not (VsockPacketError.Truncated or VsockPacketError.WrongSource))
            {
                if (_connections.TryGetValue(Keys.Of(bad.DestinationPort, bad.SourcePort), out var affected))
                {
                    affected.ResetForBadPacket();
                }
                else if (bad.Op != VsockOp.Reset)
                {
                    _resets.Enqueue(bad.ResetReply());
                }
            }

            return;
        }

        if (_connections.TryGetValue(Keys.Of(header.DestinationPort, header.SourcePort), out var connection))
        {
            connection.OnGuestPacket(header, chain);
            return;
        }

        if (header.Op == VsockOp.Request)
        {
            AcceptGuestRequest(header);
        }
        else if (header.Op != VsockOp.Reset)
        {
            _resets.Enqueue(header.ResetReply());
        }
    }

    /// <summary>
    /// Connects the guest to the host listener for its destination port. Ports from
    /// <see cref="VsockLimits.FirstLocalPort"/> up are the device's own for host-initiated connections, so a guest
    /// cannot reach them (and cannot collide with one of those connections).
    /// </summary>
    private void AcceptGuestRequest(in VsockHeader request)
    {
        if (_connections.Count >= VsockLimits.MaxConnections
            || request.DestinationPort >= VsockLimits.FirstLocalPort
            || _connector.TryConnect(request.DestinationPort) is not { } socket)
        {
            _resets.Enqueue(request.ResetReply());
            return;
        }

        var connection = VsockConnection.ForGuestRequest(this, _loop, _guestCid, request, socket);
        _connections.Add(connection.Key, connection);
        Changed(connection);
    }

    private void ProcessReceive(SplitVirtqueue receive)
    {
        // A connection that had nothing to send after all gives its buffer back; bounding those keeps a pass finite.
        var idle = 0;
        Span<byte> resetBytes = stackalloc byte[VsockLimits.HeaderSize];
        while ((_resets.Count > 0 || _receiveQueue.Count > 0) && idle <= _receiveQueue.Count)
        {
            DescriptorChain chain;
            try
            {
                if (!receive.TryPop(out chain))
                {
                    if (receive.EnableNotifications())
                    {
                        continue;
                    }

                    return;
                }
            }
            catch (VirtqueueException e)
            {
                Complain("receive", e);
                if (receive.IsBroken)
                {
                    return;
                }

                continue;
            }

            if (chain.Readable.Length > 0 || chain.WritableLength < VsockLimits.HeaderSize)
            {
                Complain($"receive buffer {chain.Head} has {chain.ReadableLength} readable and {chain.WritableLength} writable bytes");
                receive.AddUsed(chain.Head, 0);
                continue;
            }

            if (_resets.TryDequeue(out var reset))
            {
                reset.Write(resetBytes);
                chain.CopyToWritable(0, resetBytes);
                receive.AddUsed(chain.Head, VsockLimits.HeaderSize);
                continue;
            }

            var connection = _receiveQueue.Dequeue();
            connection.QueuedForReceive = false;
            if (connection.Removed)
            {
                receive.UndoPop();
                continue;
            }

            var written = connection.WriteReceivePacket(chain);
            if (written == 0)
            {
                receive.UndoPop();
                idle++;
            }
            else
            {
                receive.AddUsed(chain.Head, (uint)written);
            }
        }
    }

    private uint NextLocalPort(uint guestPort)
    {
        while (true)
        {
            var port = _nextLocalPort;
            _nextLocalPort = _nextLocalPort == uint.MaxValue ? VsockLimits.FirstLocalPort : _nextLocalPort + 1;
            if (!_connections.ContainsKey(Keys.Of(port, guestPort)))
            {
                return port;
            }
        }
    }

    /// <summary>
    /// Reports a bad chain or packet from the guest, the first one only: a hostile guest can make them by the
    /// thousand, and each costs the guest no more than that packet.
    /// </summary>
    private void Complain(string message)
    {
        if (!_reportedBadPacket)
        {
            _reportedBadPacket = true;
            _log?.Invoke($"vsock: {message}; further bad packets and buffers from the guest are dropped without a report");
        }
    }

    /// <summary>A queue error: a corrupted ring, which stops the queue, is reported once on its own; a bad chain as a bad packet.</summary>
    private void Complain(string queue, VirtqueueException e)
    {
        if (e.Error != VirtqueueError.Corrupted)
        {
            Complain($"{queue} queue: {e.Message}");
        }
        else if (!_reportedBrokenRing)
        {
            _reportedBrokenRing = true;
            _log?.Invoke($"vsock: {queue} queue: {e.Message}; vsock stops until the guest resets the device (further broken rings are not reported)");
        }
    }
}
