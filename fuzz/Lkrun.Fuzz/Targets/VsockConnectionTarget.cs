using System.Buffers.Binary;
using Lkrun.Services.Interop;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.Vsock;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// One vsock connection's state machine driven by a fuzzed sequence of guest packets, host socket actions, receive
/// buffers and clock ticks, as the muxer drives it. What must hold throughout: no exception escapes; every packet to
/// the guest carries the connection's addresses and a defined op; nothing follows a reset; data to the guest is the
/// host's bytes in order and within the guest's credit; data to the host is the guest's payloads, whole and in
/// order, some perhaps refused; the buffer for the host stays within its size.
/// <para>Input: byte 0 bit 0 picks who connects (host or guest); then one step per byte, with its arguments after it.</para>
/// </summary>
internal sealed class VsockConnectionTarget : IFuzzTarget
{
    private const uint LocalPort = 1u << 30;
    private const uint GuestPort = 5000;
    private const int MaxSteps = 200;

    public IEnumerable<byte[]> Seeds()
    {
        // Host connects; guest answers; data both ways; guest shuts down; reset.
        yield return [0, 5, 0, 2, 0, 0x10, 0, 0, 0, 0, 0, 1, 40, 5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 30, 2, 5, 0, 4, 3, 0, 0x10, 0, 0, 0, 5, 0, 3, 0, 0, 0, 0, 0, 0];
        // Guest connects; host writes beyond a small credit; credit update; host closes.
        yield return [1, 5, 1, 0, 10, 255, 5, 1, 0, 0, 0x10, 0, 0, 0, 0, 0, 5, 6, 0, 0x10, 0, 0, 0, 0x10, 0, 5, 4, 5];
        // Host connects and the guest never answers.
        yield return [0, 5, 6, 255, 6, 255, 5];
    }

    private sealed class Owner : IConnectionOwner
    {
        public long Now { get; set; } = 1000;

        public void Changed(VsockConnection connection)
        {
        }
    }

    private sealed class Reader(ReadOnlySpan<byte> bytes)
    {
        private readonly byte[] _bytes = bytes.ToArray();
        private int _position;

        public bool AtEnd => _position >= _bytes.Length;

        public byte Byte() => _position < _bytes.Length ? _bytes[_position++] : (byte)0;

        public ushort UInt16() => (ushort)(Byte() | Byte() << 8);
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }
        using var loop = new EventLoop();
        using var guest = new FakeVsockGuest();
        var owner = new Owner();
        var (device, host) = UnixSocket.Pair(nonBlocking: true);
        var hostSocket = host;
        VsockConnection connection;
        uint peerBufferAllocation = 256 * 1024;
        uint peerForwardCount = 0;
        if ((input[0] & 1) == 0)
        {
            connection = VsockConnection.ForHostConnection(owner, loop, FakeVsockGuest.Cid, LocalPort, GuestPort, device);
        }
        else
        {
            peerBufferAllocation = 4096;
            var request = FakeVsockGuest.Header(VsockOp.Request, GuestPort, LocalPort, bufferAllocation: peerBufferAllocation);
            connection = VsockConnection.ForGuestRequest(owner, loop, FakeVsockGuest.Cid, request, device);
        }
        var state = new Session(connection, guest, device.Number);
        try
        {
            var reader = new Reader(input[1..]);
            // The muxer forgets a connection once it is killed and owes the guest nothing; so does this run.
            for (var step = 0; step < MaxSteps && !reader.AtEnd && !(connection.State == ConnectionState.Killed && connection.Pending == PendingReplies.None); step++)
            {
                switch (reader.Byte() % 8)
                {
                    case 0:
                        var op = (VsockOp)(1 + reader.Byte() % 8);
                        var flags = (uint)reader.Byte();
                        var bufferAllocation = (uint)reader.UInt16() << 4;
                        var forwardCount = (uint)reader.UInt16();
                        var payload = new byte[reader.Byte() * 16];
                        state.FromGuest(op, flags, bufferAllocation, forwardCount, payload, ref peerBufferAllocation, ref peerForwardCount);
                        break;
                    case 1:
                        if (hostSocket is not null)
                        {
                            state.HostWrites(hostSocket, reader.Byte() * 64);
                        }
                        break;
                    case 2:
                        if (hostSocket is not null)
                        {
                            state.HostReads(hostSocket);
                        }
                        break;
                    case 3:
                        if (hostSocket is not null)
                        {
                            LibC.shutdown(hostSocket.Number, LibC.SHUT_WR);
                        }
                        break;
                    case 4:
                        hostSocket?.Dispose();
                        hostSocket = null;
                        break;
                    case 5:
                        state.ToGuest(1 + reader.Byte() % 8, peerBufferAllocation, peerForwardCount);
                        break;
                    case 6:
                        owner.Now += reader.Byte() * 100;
                        connection.OnDeadline(owner.Now);
                        break;
                    case 7:
                        connection.OnEvents(reader.Byte() & (EventLoop.Readable | EventLoop.Writable | EventLoop.Error | EventLoop.HangUp));
                        break;
                }
                state.DeliverSocketEvents();
                Check.That(Enum.IsDefined(connection.State), "the state is one of the six");
                Check.That(connection.BufferedForHost <= VsockLimits.ConnectionBufferSize, "the buffer for the host stays within its size");
                Check.That(connection.PeerCredit >= 0, "the guest's credit is never negative");
            }
            if (hostSocket is not null)
            {
                state.HostReads(hostSocket);
            }
            state.CheckHostStream(complete: false);
        }
        finally
        {
            connection.Abort();
            hostSocket?.Dispose();
        }
    }

    /// <summary>What one run has seen; the checks compare it with what each side sent.</summary>
    private sealed class Session(VsockConnection connection, FakeVsockGuest guest, int deviceFd)
    {
        private readonly PollSet _poll = new();
        private readonly List<byte[]> _guestPayloads = [];
        private readonly List<byte> _hostReceived = [];
        private long _hostWritten;
        private long _guestReceived;
        private bool _resetSent;

        /// <summary>Sends a packet as the guest does and hands it over as the muxer would.</summary>
        public void FromGuest(VsockOp op, uint flags, uint bufferAllocation, uint forwardCount, byte[] payload, ref uint peerBufferAllocation, ref uint peerForwardCount)
        {
            // Each data packet's bytes carry its number, so the host's stream shows which packets it got.
            payload.AsSpan().Fill((byte)(_guestPayloads.Count + 1));
            guest.Send(FakeVsockGuest.Header(op, GuestPort, LocalPort, flags: flags, bufferAllocation: bufferAllocation, forwardCount: forwardCount), payload);
            Check.That(guest.Transmit.TryPop(out var chain), "the guest's packet pops");
            try
            {
                var header = VsockPacket.ParseFromGuest(chain, FakeVsockGuest.Cid);
                if (connection.State != ConnectionState.Killed)
                {
                    peerBufferAllocation = bufferAllocation;
                    peerForwardCount = forwardCount;
                }
                if (op == VsockOp.ReadWrite && payload.Length > 0)
                {
                    _guestPayloads.Add(payload);
                }
                connection.OnGuestPacket(header, chain);
            }
            catch (VsockPacketException)
            {
                connection.ResetForBadPacket();
            }
            guest.Transmit.AddUsed(chain.Head, 0);
            guest.Transmit.PublishUsed();
        }

        public unsafe void HostWrites(FileDescriptor host, int count)
        {
            var bytes = new byte[count];
            for (var i = 0; i < count; i++)
            {
                bytes[i] = HostByte(_hostWritten + i);
            }
            fixed (byte* start = bytes)
            {
                // Safe: writes at most bytes.Length from the pinned array.
                var written = (long)LibC.write(host.Number, start, count);
                _hostWritten += Math.Max(0, written);
            }
        }

        public unsafe void HostReads(FileDescriptor host)
        {
            var buffer = new byte[65536];
            fixed (byte* start = buffer)
            {
                long read;
                // Safe: reads at most buffer.Length into the pinned array.
                while ((read = (long)LibC.read(host.Number, start, buffer.Length)) > 0)
                {
                    _hostReceived.AddRange(buffer.AsSpan(0, (int)read));
                }
            }
            CheckHostStream(complete: false);
        }

        /// <summary>Posts receive buffers and takes what the connection writes into them.</summary>
        public void ToGuest(int buffers, uint peerBufferAllocation, uint peerForwardCount)
        {
            for (var i = 0; i < buffers; i++)
            {
                guest.PostReceiveBuffers(1);
                Check.That(guest.Receive.TryPop(out var chain), "a posted receive buffer pops");
                var written = connection.WriteReceivePacket(chain);
                if (written == 0)
                {
                    guest.Receive.UndoPop();
                    break;
                }
                guest.Receive.AddUsed(chain.Head, (uint)written);
                guest.Receive.PublishUsed();
                foreach (var packet in guest.TakeReceived())
                {
                    var header = packet.Header;
                    Check.That(!_resetSent, "nothing follows a reset");
                    Check.That(header.SourceCid == VsockLimits.HostCid && header.DestinationCid == FakeVsockGuest.Cid, "packets go from the host to the guest");
                    Check.That(header.SourcePort == LocalPort && header.DestinationPort == GuestPort, "packets carry the connection's ports");
                    Check.That(header.Type == VsockLimits.StreamType && header.Op is >= VsockOp.Request and <= VsockOp.CreditRequest, "packets are stream packets of a defined op");
                    Check.That(header.Op == VsockOp.ReadWrite || packet.Payload.Length == 0, "only data packets carry payload");
                    _resetSent |= header.Op == VsockOp.Reset;
                    for (var j = 0; j < packet.Payload.Length; j++)
                    {
                        Check.That(packet.Payload[j] == HostByte(_guestReceived + j), "the guest gets the host's bytes in order");
                    }
                    _guestReceived += packet.Payload.Length;
                    if (packet.Payload.Length > 0)
                    {
                        Check.That((uint)((uint)_guestReceived - peerForwardCount) <= peerBufferAllocation, "data to the guest stays within its credit");
                    }
                }
            }
        }

        /// <summary>Tells the connection what its socket's readiness is now, as the event loop would.</summary>
        public void DeliverSocketEvents()
        {
            if (connection.State is ConnectionState.LocalClosed or ConnectionState.Killed)
            {
                return;
            }
            _poll.Clear();
            _poll.Add(deviceFd, (short)(LibC.POLLIN | LibC.POLLOUT));
            _poll.Wait(0);
            var events = (uint)(ushort)_poll.ReturnedEvents(0) & (EventLoop.Readable | EventLoop.Writable | EventLoop.Error | EventLoop.HangUp);
            if (events != 0)
            {
                connection.OnEvents(events);
            }
        }

        /// <summary>The host's stream is whole guest payloads in the order sent (some perhaps refused), the last perhaps in part.</summary>
        public void CheckHostStream(bool complete)
        {
            var next = 0;
            var position = 0;
            while (position < _hostReceived.Count)
            {
                var tag = _hostReceived[position];
                var index = tag - 1;
                Check.That(index >= next && index < _guestPayloads.Count, "the host gets the guest's payloads in order");
                var run = 0;
                while (position + run < _hostReceived.Count && _hostReceived[position + run] == tag)
                {
                    run++;
                }
                var length = _guestPayloads[index].Length;
                var last = position + run == _hostReceived.Count;
                Check.That(run == length || run < length && last && !complete, "the host gets each payload whole");
                position += run;
                next = index + 1;
            }
        }

        private static byte HostByte(long index) => (byte)(index * 31 + index / 251 + 7);
    }
}
