using System.Net.Sockets;
using Lkrun.Services.Interop;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.VhostUser;
using Lkrun.Services.State;
using Lkrun.Services.Vsock;

namespace Lkrun.Services.Tests.Vsock;

/// <summary>
/// The muxer between real host sockets and a fake guest that plays the vsock protocol by hand. Host connections
/// arrive as the device hands them over (one end of a socket pair each); guest connections reach listeners at
/// 00000002.PPPPPPPP. Every step runs the event loop without waiting, so nothing here depends on timing; deadlines
/// use a clock the tests move.
/// </summary>
public class VsockMuxerTests : IDisposable
{
    private const uint EchoPort = 5000;
    private const uint HostPort = 6000;

    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-vsock-").FullName;
    private readonly EventLoop _loop = new();
    private readonly FakeVsockGuest _guest = new();
    private readonly HostListeners _hostListeners;
    private readonly VsockMuxer _muxer;
    private readonly List<string> _log = [];
    private readonly List<Socket> _sockets = [];
    private long _now = 1000;

    public VsockMuxerTests()
    {
        _hostListeners = new HostListeners(_directory);
        _muxer = new VsockMuxer(FakeVsockGuest.Cid, _loop, _hostListeners, _log.Add, () => _now);
        _muxer.Attach(_guest.Receive, _guest.Transmit);
        _guest.PostReceiveBuffers();
    }

    public void Dispose()
    {
        foreach (var socket in _sockets)
        {
            socket.Dispose();
        }

        _muxer.Detach();
        _loop.Dispose();
        _guest.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>Lets every ready socket and queued packet move, several rounds, without blocking.</summary>
    private List<ReceivedPacket> Run(bool replenish = true)
    {
        var packets = new List<ReceivedPacket>();
        for (var round = 0; round < 12; round++)
        {
            _loop.Wait(0);
            _muxer.ExpireDeadlines();
            _muxer.Pump();
            packets.AddRange(_guest.TakeReceived());
            if (replenish)
            {
                _guest.PostReceiveBuffers();
            }
        }

        return packets;
    }

    /// <summary>A host program's connection to guest.<paramref name="port"/>, handed to the muxer as the device does.</summary>
    private Socket ConnectHost(uint port = EchoPort)
    {
        var (host, device) = SocketPairs.Create();
        UnixSocket.SetNonBlocking(device.Number, true);
        _muxer.ConnectToGuest(port, device);
        var socket = SocketPairs.AsSocket(host);
        socket.ReceiveTimeout = 2000;
        socket.SendTimeout = 2000;
        _sockets.Add(socket);
        return socket;
    }

    private Socket ListenHost(uint port = HostPort)
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(new StateLayout(_directory).HostVsockSocket(port)));
        listener.Listen(64);
        _sockets.Add(listener);
        return listener;
    }

    private static byte[] ReceiveExactly(Socket socket, int count)
    {
        var buffer = new byte[count];
        var filled = 0;
        while (filled < count)
        {
            var received = socket.Receive(buffer, filled, count - filled, SocketFlags.None);
            if (received == 0)
            {
                throw new EndOfStreamException($"after {filled} of {count} bytes");
            }

            filled += received;
        }

        return buffer;
    }

    private static bool IsClosed(Socket socket)
    {
        try
        {
            return socket.Receive(new byte[1]) == 0;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
    }

    /// <summary>A host connection the guest accepted; returns the socket and the device's port for it.</summary>
    private (Socket Host, uint LocalPort) Establish(uint bufferAllocation = 256 * 1024)
    {
        var host = ConnectHost();
        var request = Assert.Single(Run());
        Assert.Equal(VsockOp.Request, request.Header.Op);
        Assert.Equal(EchoPort, request.Header.DestinationPort);
        Assert.Equal(FakeVsockGuest.Cid, request.Header.DestinationCid);
        _guest.Send(FakeVsockGuest.Header(VsockOp.Response, EchoPort, request.Header.SourcePort, bufferAllocation: bufferAllocation));
        Assert.Empty(Run());
        return (host, request.Header.SourcePort);
    }

    private static VsockHeader From(uint localPort, VsockOp op, uint flags = 0, uint bufferAllocation = 256 * 1024, uint forwardCount = 0) =>
        FakeVsockGuest.Header(op, EchoPort, localPort, flags: flags, bufferAllocation: bufferAllocation, forwardCount: forwardCount);

    [Fact]
    public void Host_connection_becomes_a_request_and_bytes_flow_both_ways()
    {
        var (host, localPort) = Establish();
        Assert.True(localPort >= VsockLimits.FirstLocalPort);

        host.Send("hello"u8);
        var data = Assert.Single(Run());
        Assert.Equal(VsockOp.ReadWrite, data.Header.Op);
        Assert.Equal("hello"u8.ToArray(), data.Payload);
        Assert.Equal((uint)VsockLimits.ConnectionBufferSize, data.Header.BufferAllocation);

        _guest.Send(From(localPort, VsockOp.ReadWrite), "world"u8);
        Run();
        Assert.Equal("world"u8.ToArray(), ReceiveExactly(host, 5));
    }

    [Fact]
    public void Host_half_close_reaches_the_guest_and_the_reply_still_comes_back()
    {
        var (host, localPort) = Establish();
        host.Send("ping"u8);
        host.Shutdown(SocketShutdown.Send);

        var packets = Run();
        Assert.Equal([VsockOp.ReadWrite, VsockOp.Shutdown], packets.Select(packet => packet.Header.Op));
        Assert.Equal((uint)VsockShutdown.Send, packets[1].Header.Flags);

        _guest.Send(From(localPort, VsockOp.ReadWrite), "pong"u8);
        _guest.Send(From(localPort, VsockOp.Shutdown, (uint)VsockShutdown.Both));
        var reset = Assert.Single(Run());
        Assert.Equal(VsockOp.Reset, reset.Header.Op);
        Assert.Equal("pong"u8.ToArray(), ReceiveExactly(host, 4));
        Assert.True(IsClosed(host));
        Assert.Equal(0, _muxer.ConnectionCount);
    }

    [Fact]
    public void Guest_half_close_ends_the_host_stream_after_buffered_bytes()
    {
        var (host, localPort) = Establish();

        _guest.Send(From(localPort, VsockOp.ReadWrite), "last"u8);
        _guest.Send(From(localPort, VsockOp.Shutdown, (uint)VsockShutdown.Send));
        Run();

        Assert.Equal("last"u8.ToArray(), ReceiveExactly(host, 4));
        Assert.True(IsClosed(host));
        host.Send("still open"u8);
        Assert.Equal("still open"u8.ToArray(), Run().Single().Payload);
    }

    [Fact]
    public void Guest_reset_of_a_request_closes_the_host_connection()
    {
        var host = ConnectHost();
        var request = Assert.Single(Run());

        _guest.Send(From(request.Header.SourcePort, VsockOp.Reset));
        Run();

        Assert.True(IsClosed(host));
        Assert.Equal(0, _muxer.ConnectionCount);
    }

    [Fact]
    public void Unanswered_request_is_reset_after_the_connect_timeout()
    {
        var host = ConnectHost();
        Assert.Single(Run());

        _now += (long)VsockLimits.ConnectTimeout.TotalMilliseconds + 1;
        var reset = Assert.Single(Run());

        Assert.Equal(VsockOp.Reset, reset.Header.Op);
        Assert.True(IsClosed(host));
    }

    [Fact]
    public void Host_connection_without_a_running_driver_is_closed_at_once()
    {
        _muxer.Detach();
        var host = ConnectHost();
        Run();

        Assert.True(IsClosed(host));
    }

    [Fact]
    public void Guest_connection_reaches_the_host_listener()
    {
        using var listener = ListenHost();

        _guest.Send(FakeVsockGuest.Header(VsockOp.Request, 1234, HostPort));
        var response = Assert.Single(Run());
        Assert.Equal(VsockOp.Response, response.Header.Op);
        Assert.Equal((HostPort, 1234u), (response.Header.SourcePort, response.Header.DestinationPort));

        using var accepted = listener.Accept();
        accepted.ReceiveTimeout = 2000;
        _guest.Send(FakeVsockGuest.Header(VsockOp.ReadWrite, 1234, HostPort), "from guest"u8);
        Run();
        Assert.Equal("from guest"u8.ToArray(), ReceiveExactly(accepted, 10));

        accepted.Send("from host"u8);
        Assert.Equal("from host"u8.ToArray(), Run().Single().Payload);

        _guest.Send(FakeVsockGuest.Header(VsockOp.Shutdown, 1234, HostPort, flags: (uint)VsockShutdown.Both));
        Assert.Equal(VsockOp.Reset, Run().Single().Header.Op);
        Assert.True(IsClosed(accepted));
    }

    [Fact]
    public void Guest_connection_without_a_host_listener_is_reset()
    {
        _guest.Send(FakeVsockGuest.Header(VsockOp.Request, 1234, HostPort));

        var reset = Assert.Single(Run());

        Assert.Equal(VsockOp.Reset, reset.Header.Op);
        Assert.Equal((HostPort, 1234u), (reset.Header.SourcePort, reset.Header.DestinationPort));
    }

    [Fact]
    public void Packets_of_unknown_connections_are_reset_but_resets_are_not_answered()
    {
        _guest.Send(FakeVsockGuest.Header(VsockOp.ReadWrite, 1, 2), "x"u8);
        _guest.Send(FakeVsockGuest.Header(VsockOp.Reset, 3, 4));

        var reset = Assert.Single(Run());
        Assert.Equal((VsockOp.Reset, 2u, 1u), (reset.Header.Op, reset.Header.SourcePort, reset.Header.DestinationPort));
    }

    [Fact]
    public void Host_closing_mid_stream_tells_the_guest_and_waits_for_its_reset()
    {
        var (host, localPort) = Establish();
        host.Send("partial"u8);
        host.Close();

        var packets = Run();
        Assert.Equal([VsockOp.ReadWrite, VsockOp.Shutdown], packets.Select(packet => packet.Header.Op));
        Assert.Equal((uint)VsockShutdown.Both, packets[1].Header.Flags);
        Assert.Equal(1, _muxer.ConnectionCount);

        _guest.Send(From(localPort, VsockOp.ReadWrite), "ignored"u8);
        Assert.Empty(Run());
        _guest.Send(From(localPort, VsockOp.Reset));
        Assert.Empty(Run());
        Assert.Equal(0, _muxer.ConnectionCount);
    }

    [Fact]
    public void Guest_that_never_resets_a_closed_connection_is_reset_after_the_close_timeout()
    {
        var (host, _) = Establish();
        host.Close();
        Assert.Equal(VsockOp.Shutdown, Run().Single().Header.Op);

        _now += (long)VsockLimits.CloseTimeout.TotalMilliseconds + 1;

        Assert.Equal(VsockOp.Reset, Run().Single().Header.Op);
        Assert.Equal(0, _muxer.ConnectionCount);
    }

    [Fact]
    public void Slow_host_reader_holds_the_guest_to_its_credit_and_loses_nothing()
    {
        var (host, localPort) = Establish();
        var sent = new List<byte>();
        var random = new Random(7);
        uint credit = VsockLimits.ConnectionBufferSize;
        uint guestSent = 0;
        uint announcedForward = 0;

        // The guest sends as long as the device's last announcement allows; the host reads nothing yet.
        var rounds = 0;
        while (credit > 0 && rounds++ < 200)
        {
            var chunk = new byte[Math.Min(credit, (uint)VsockLimits.MaxPacketPayload)];
            random.NextBytes(chunk);
            _guest.Send(From(localPort, VsockOp.ReadWrite), chunk);
            sent.AddRange(chunk);
            guestSent += (uint)chunk.Length;
            foreach (var packet in Run())
            {
                Assert.NotEqual(VsockOp.Reset, packet.Header.Op);
                announcedForward = packet.Header.ForwardCount;
            }

            credit = VsockLimits.ConnectionBufferSize - (guestSent - announcedForward);
        }

        Assert.Equal(0u, credit);
        var connection = Assert.Single(_muxer.Connections);
        Assert.InRange(connection.BufferedForHost, 1, VsockLimits.ConnectionBufferSize);

        // The host drains; the device forwards the rest and tells the guest about the space.
        var received = new List<byte>();
        while (received.Count < sent.Count)
        {
            var available = host.Available > 0 ? host.Available : 1;
            received.AddRange(ReceiveExactly(host, Math.Min(available, sent.Count - received.Count)));
            foreach (var packet in Run())
            {
                announcedForward = packet.Header.ForwardCount;
            }
        }

        Assert.Equal(sent, received);
        // The guest is left with at least half the buffer as credit, so it never waits on an update that is not coming.
        Assert.True(VsockLimits.ConnectionBufferSize - (guestSent - announcedForward) >= VsockLimits.ConnectionBufferSize / 2);
    }

    [Fact]
    public void Fast_host_reader_keeps_the_guest_at_half_its_credit_or_more_with_few_updates()
    {
        var (host, localPort) = Establish();
        const int packetSize = 16 * 1024;
        const int total = 4 << 20;
        uint guestSent = 0;
        uint announcedForward = 0;
        var updates = 0;

        while (guestSent < total)
        {
            _guest.Send(From(localPort, VsockOp.ReadWrite), new byte[packetSize]);
            guestSent += packetSize;
            foreach (var packet in Run())
            {
                Assert.Equal(VsockOp.CreditUpdate, packet.Header.Op);
                announcedForward = packet.Header.ForwardCount;
                updates++;
            }

            ReceiveExactly(host, packetSize);
            var credit = VsockLimits.ConnectionBufferSize - (guestSent - announcedForward);
            Assert.True(credit >= VsockLimits.ConnectionBufferSize / 2, $"the guest is down to {credit} bytes of credit after {guestSent}");
        }

        // An update at most per quarter window: each one costs the guest an interrupt.
        Assert.InRange(updates, total / VsockLimits.ConnectionBufferSize, total / (VsockLimits.ConnectionBufferSize / 4));
    }

    [Fact]
    public void Guest_with_a_small_buffer_gets_credit_before_it_runs_dry()
    {
        // Linux caps its send credit at its own buf_alloc: this guest can have only 16 KiB in flight.
        const uint guestBuffer = 16 * 1024;
        var (host, localPort) = Establish(bufferAllocation: guestBuffer);
        var total = 0;

        for (var round = 0; round < 8; round++)
        {
            _guest.Send(From(localPort, VsockOp.ReadWrite, bufferAllocation: guestBuffer), new byte[guestBuffer]);
            total += (int)guestBuffer;

            // All of it went into the host socket: the guest, now out of credit, must hear about the space.
            var update = Assert.Single(Run());
            Assert.Equal(VsockOp.CreditUpdate, update.Header.Op);
            Assert.Equal((uint)total, update.Header.ForwardCount);
            ReceiveExactly(host, (int)guestBuffer);
        }
    }

    [Fact]
    public void Forwarding_in_both_directions_allocates_nothing_once_warm()
    {
        var (host, localPort) = Establish();
        var chunk = new byte[4096];
        long allocated = 0;
        uint consumed = 0;

        void Step()
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            _loop.Wait(0);
            _muxer.ExpireDeadlines();
            _muxer.Pump();
            allocated += GC.GetAllocatedBytesForCurrentThread() - before;
        }

        for (var round = 0; round < 300; round++)
        {
            if (round == 50)
            {
                allocated = 0;
            }

            // The guest's packets announce what it consumed, so the device keeps credit to send it more.
            _guest.Send(From(localPort, VsockOp.ReadWrite, forwardCount: consumed), chunk);
            Step();
            Assert.Equal(chunk.Length, host.Receive(chunk));
            host.Send(chunk);
            Step();
            Step();
            var received = _guest.TakeReceived().Where(packet => packet.Header.Op == VsockOp.ReadWrite).Sum(packet => packet.Payload.Length);
            Assert.Equal(chunk.Length, received);
            consumed += (uint)received;
            _guest.PostReceiveBuffers();
        }

        Assert.Equal(0, allocated);
    }

    [Fact]
    public void Guest_sending_beyond_its_credit_is_reset()
    {
        var (host, localPort) = Establish();
        var chunk = new byte[VsockLimits.MaxPacketPayload];
        var packets = new List<ReceivedPacket>();

        for (var i = 0; i < 40 && !packets.Any(packet => packet.Header.Op == VsockOp.Reset); i++)
        {
            _guest.Send(From(localPort, VsockOp.ReadWrite), chunk);
            packets.AddRange(Run());
        }

        Assert.Contains(packets, packet => packet.Header.Op == VsockOp.Reset);
        Assert.Equal(0, _muxer.ConnectionCount);
        // What reached the socket before the reset is still there, then the stream ends.
        var drained = 0;
        while (host.Receive(chunk) is var count and > 0)
        {
            drained += count;
        }

        Assert.True(drained > 0);
    }

    [Fact]
    public void Slow_guest_reader_stops_the_host_socket_at_the_guest_credit()
    {
        const uint guestBuffer = 8192;
        var (host, localPort) = Establish(bufferAllocation: guestBuffer);
        host.Blocking = false;
        var payload = new byte[64 * 1024];
        new Random(3).NextBytes(payload);
        Assert.Equal(payload.Length, host.Send(payload));

        var first = Run();
        Assert.Equal((int)guestBuffer, first.Sum(packet => packet.Payload.Length));
        Assert.Empty(Run());

        _guest.Send(From(localPort, VsockOp.CreditUpdate, bufferAllocation: guestBuffer, forwardCount: guestBuffer));
        var second = Run();

        Assert.Equal((int)guestBuffer, second.Sum(packet => packet.Payload.Length));
        Assert.Equal(payload[..(2 * (int)guestBuffer)], first.Concat(second).SelectMany(packet => packet.Payload).ToArray());
    }

    [Fact]
    public void Credit_request_is_answered_with_a_credit_update()
    {
        var (_, localPort) = Establish();

        _guest.Send(From(localPort, VsockOp.CreditRequest));

        var update = Assert.Single(Run());
        Assert.Equal(VsockOp.CreditUpdate, update.Header.Op);
        Assert.Equal((uint)VsockLimits.ConnectionBufferSize, update.Header.BufferAllocation);
    }

    [Fact]
    public void Bad_packet_resets_only_its_connection()
    {
        var (first, firstPort) = Establish();
        var (second, secondPort) = Establish();

        _guest.SendRaw(From(firstPort, VsockOp.ReadWrite) with { Length = VsockLimits.MaxPacketPayload + 1 }, VsockLimits.MaxPacketPayload + 1);
        var reset = Assert.Single(Run());
        Assert.Equal((VsockOp.Reset, firstPort), (reset.Header.Op, reset.Header.SourcePort));
        Assert.True(IsClosed(first));

        second.Send("alive"u8);
        var data = Assert.Single(Run());
        Assert.Equal(secondPort, data.Header.SourcePort);
        Assert.Equal("alive"u8.ToArray(), data.Payload);
        Assert.Single(_log);
    }

    [Fact]
    public void Malformed_transmit_chain_is_skipped_and_the_queue_goes_on()
    {
        var (host, localPort) = Establish();
        _guest.TransmitDriver.Post(new DriverBuffer(0xdead_0000_0000, 64, false));
        _guest.Send(From(localPort, VsockOp.ReadWrite), "after"u8);

        Run();

        Assert.Equal("after"u8.ToArray(), ReceiveExactly(host, 5));
        Assert.Contains(_log, line => line.Contains("outside guest memory"));
    }

    [Fact]
    public void A_guest_sending_garbage_by_the_hundred_is_reported_once_and_its_good_connection_goes_on()
    {
        var (host, localPort) = Establish();
        for (var i = 0; i < 100; i++)
        {
            _guest.TransmitDriver.Post(new DriverBuffer(0xdead_0000_0000 + (ulong)i, 64, false));
            _guest.SendRaw(From(localPort + 1 + (uint)i, (VsockOp)99), 0);
            Run();
            _guest.ReclaimTransmitted();
        }
        _guest.Send(From(localPort, VsockOp.ReadWrite), "after"u8);

        Run();

        Assert.Equal("after"u8.ToArray(), ReceiveExactly(host, 5));
        var line = Assert.Single(_log);
        Assert.EndsWith("; further bad packets and buffers from the guest are dropped without a report", line);
    }

    [Fact]
    public void A_corrupted_ring_is_reported_once_besides_the_bad_packets_and_stops_only_vsock()
    {
        _guest.TransmitDriver.Post(new DriverBuffer(0xdead_0000_0000, 64, false));
        Run();
        _guest.TransmitDriver.SetAvailableIndex((ushort)(_guest.Transmit.NextAvailable + 1000));
        Run();
        Run();

        Assert.True(_guest.Transmit.IsBroken);
        Assert.Equal(2, _log.Count);
        Assert.Matches("^vsock: transmit queue: available index \\d+ is more than 128 ahead of \\d+; vsock stops until the guest resets the device", _log[1]);
    }

    [Fact]
    public void Stopping_the_queues_closes_every_host_connection()
    {
        var (first, _) = Establish();
        var (second, _) = Establish();

        _muxer.Detach();

        Assert.True(IsClosed(first));
        Assert.True(IsClosed(second));
        Assert.Equal(0, _muxer.ConnectionCount);
    }

    [Fact]
    public void Resets_wait_in_a_bounded_queue_while_the_guest_posts_no_receive_buffers()
    {
        using var guest = new FakeVsockGuest();
        var muxer = new VsockMuxer(FakeVsockGuest.Cid, _loop, _hostListeners, _log.Add, () => _now);
        muxer.Attach(guest.Receive, guest.Transmit);
        const int total = VsockLimits.MaxPendingResets + 40;

        // Packets for no connection, while the guest has posted no receive buffer for the resets.
        for (var i = 0; i < total; i++)
        {
            guest.Send(FakeVsockGuest.Header(VsockOp.ReadWrite, (uint)i, 2), "x"u8);
            muxer.Pump();
        }

        Assert.True(guest.Transmit.HasAvailable);
        // Each unread packet holds a header and a payload descriptor.
        Assert.Equal(2 * (total - VsockLimits.MaxPendingResets), guest.TransmitDriver.Size - guest.TransmitDriver.FreeDescriptors);

        // Receive buffers arrive: the resets go out and the transmit queue is read again.
        var resets = new List<ReceivedPacket>();
        for (var round = 0; round < 20; round++)
        {
            guest.PostReceiveBuffers();
            muxer.Pump();
            resets.AddRange(guest.TakeReceived());
        }

        Assert.Equal(total, resets.Count);
        Assert.All(resets, packet => Assert.Equal(VsockOp.Reset, packet.Header.Op));
        Assert.Equal(total, resets.Select(packet => packet.Header.DestinationPort).Distinct().Count());
        muxer.Detach();
    }

    [Fact]
    public void Many_connections_echo_their_own_bytes()
    {
        const int count = 64;
        var hosts = Enumerable.Range(0, count).Select(_ => ConnectHost()).ToList();
        var requests = Run();
        Assert.Equal(count, requests.Count(packet => packet.Header.Op == VsockOp.Request));
        foreach (var request in requests)
        {
            _guest.Send(From(request.Header.SourcePort, VsockOp.Response));
            _muxer.Pump();
        }

        Run();
        for (var i = 0; i < count; i++)
        {
            hosts[i].Send(BitConverter.GetBytes(i * 1000));
        }

        foreach (var packet in Run().Where(packet => packet.Header.Op == VsockOp.ReadWrite))
        {
            _guest.Send(From(packet.Header.SourcePort, VsockOp.ReadWrite), packet.Payload);
            _muxer.Pump();
        }

        Run();
        for (var i = 0; i < count; i++)
        {
            Assert.Equal(i * 1000, BitConverter.ToInt32(ReceiveExactly(hosts[i], 4)));
        }
    }

    /// <summary>Connects guest requests to 00000002.PPPPPPPP listeners in the test's directory, as the device does.</summary>
    private sealed class HostListeners(string directory) : IHostConnector
    {
        public FileDescriptor? TryConnect(uint port) =>
            UnixSocket.TryConnect(new StateLayout(directory).HostVsockSocket(port), out var socket) == 0 ? socket : null;
    }
}
