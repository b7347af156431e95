using Lkrun.Services.Interop;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.VhostUser;
using Lkrun.Services.Vsock;

namespace Lkrun.Services.Tests.Vsock;

/// <summary>One connection's state machine and credit accounting, driven packet by packet without a muxer.</summary>
public class VsockConnectionTests : IDisposable
{
    private const uint LocalPort = 1u << 30;
    private const uint GuestPort = 5000;

    private readonly EventLoop _loop = new();
    private readonly FakeVsockGuest _guest = new();
    private readonly Owner _owner = new();
    private readonly FileDescriptor _host;
    private readonly VsockConnection _connection;

    public VsockConnectionTests()
    {
        var (device, host) = UnixSocket.Pair(nonBlocking: true);
        _host = host;
        _connection = VsockConnection.ForHostConnection(_owner, _loop, FakeVsockGuest.Cid, LocalPort, GuestPort, device);
    }

    public void Dispose()
    {
        _connection.Abort();
        _host.Dispose();
        _guest.Dispose();
        _loop.Dispose();
    }

    private sealed class Owner : IConnectionOwner
    {
        public long Now { get; set; } = 1000;

        public int Changes { get; private set; }

        public void Changed(VsockConnection connection) => Changes++;
    }

    /// <summary>Delivers a guest packet through a real transmit chain.</summary>
    private void FromGuest(VsockOp op, uint bufferAllocation = 256 * 1024, uint forwardCount = 0, uint flags = 0, byte[]? payload = null)
    {
        var header = FakeVsockGuest.Header(op, GuestPort, LocalPort, flags: flags, bufferAllocation: bufferAllocation, forwardCount: forwardCount);
        _guest.Send(header, payload);
        Assert.True(_guest.Transmit.TryPop(out var chain));
        _connection.OnGuestPacket(VsockPacket.ParseFromGuest(chain, FakeVsockGuest.Cid), chain);
        _guest.Transmit.AddUsed(chain.Head, 0);
        _guest.Transmit.PublishUsed();
    }

    /// <summary>Lets the connection write its next packet into a receive buffer; null when it had nothing.</summary>
    private ReceivedPacket? ToGuest()
    {
        _guest.PostReceiveBuffers(1);
        Assert.True(_guest.Receive.TryPop(out var chain));
        var written = _connection.WriteReceivePacket(chain);
        if (written == 0)
        {
            _guest.Receive.UndoPop();
            return null;
        }

        _guest.Receive.AddUsed(chain.Head, (uint)written);
        _guest.Receive.PublishUsed();
        return Assert.Single(_guest.TakeReceived());
    }

    private unsafe void HostWrites(int count)
    {
        var bytes = new byte[count];
        fixed (byte* start = bytes)
        {
            Assert.Equal(count, (int)LibC.write(_host.Number, start, count));
        }

        _connection.OnEvents(EventLoop.Readable);
    }

    private void Establish(uint bufferAllocation = 256 * 1024)
    {
        Assert.Equal(VsockOp.Request, ToGuest()!.Header.Op);
        FromGuest(VsockOp.Response, bufferAllocation);
        Assert.Equal(ConnectionState.Established, _connection.State);
    }

    [Fact]
    public void Host_connection_asks_the_guest_and_is_established_by_its_response()
    {
        Assert.Equal(ConnectionState.LocalInit, _connection.State);
        Assert.Equal(PendingReplies.Request, _connection.Pending);

        var request = ToGuest()!;
        Assert.Equal((VsockLimits.HostCid, LocalPort, FakeVsockGuest.Cid, GuestPort), (request.Header.SourceCid, request.Header.SourcePort, request.Header.DestinationCid, request.Header.DestinationPort));
        Assert.Equal((uint)VsockLimits.ConnectionBufferSize, request.Header.BufferAllocation);
        Assert.Null(ToGuest());

        FromGuest(VsockOp.Response, bufferAllocation: 1000);

        Assert.Equal(ConnectionState.Established, _connection.State);
        Assert.Equal(0L, _connection.Deadline);
        Assert.Equal(1000, _connection.PeerCredit);
    }

    [Fact]
    public void Bytes_sent_to_the_guest_use_its_credit_until_it_forwards_them()
    {
        Establish(bufferAllocation: 1000);

        HostWrites(300);
        var data = ToGuest()!;
        Assert.Equal(300, data.Payload.Length);
        Assert.Equal(700, _connection.PeerCredit);

        HostWrites(900);
        Assert.Equal(700, ToGuest()!.Payload.Length);
        Assert.Equal(0, _connection.PeerCredit);
        Assert.False(_connection.HasReceiveWork);

        FromGuest(VsockOp.CreditUpdate, bufferAllocation: 1000, forwardCount: 1000);
        Assert.Equal(1000, _connection.PeerCredit);
        Assert.True(_connection.HasReceiveWork);
        Assert.Equal(200, ToGuest()!.Payload.Length);
    }

    [Fact]
    public void Forward_count_beyond_what_was_sent_gives_no_credit_rather_than_overflowing()
    {
        Establish(bufferAllocation: 1000);
        HostWrites(10);
        ToGuest();

        FromGuest(VsockOp.CreditUpdate, bufferAllocation: 1000, forwardCount: 11);

        Assert.Equal(0, _connection.PeerCredit);
    }

    [Fact]
    public void Credit_request_is_answered_with_an_update_carrying_the_forward_count()
    {
        Establish();
        FromGuest(VsockOp.ReadWrite, payload: new byte[123]);

        FromGuest(VsockOp.CreditRequest);

        var update = ToGuest()!;
        Assert.Equal(VsockOp.CreditUpdate, update.Header.Op);
        Assert.Equal(123u, update.Header.ForwardCount);
    }

    [Fact]
    public void Data_before_the_connection_is_established_resets_it()
    {
        FromGuest(VsockOp.ReadWrite, payload: [1]);

        Assert.Equal(ConnectionState.Killed, _connection.State);
        Assert.Equal(PendingReplies.None, _connection.Pending);
    }

    [Fact]
    public void Reset_after_the_request_went_out_is_sent_to_the_guest()
    {
        ToGuest();

        FromGuest(VsockOp.Response);
        FromGuest(VsockOp.Request);

        Assert.Equal(ConnectionState.Killed, _connection.State);
        Assert.Equal(VsockOp.Reset, ToGuest()!.Header.Op);
        Assert.Equal(PendingReplies.None, _connection.Pending);
    }

    [Fact]
    public void Connect_deadline_resets_only_once_it_passed()
    {
        ToGuest();
        var deadline = _connection.Deadline;

        _connection.OnDeadline(deadline - 1);
        Assert.Equal(ConnectionState.LocalInit, _connection.State);

        _connection.OnDeadline(deadline);
        Assert.Equal(ConnectionState.Killed, _connection.State);
        Assert.Equal(PendingReplies.Reset, _connection.Pending);
    }

    [Fact]
    public void Guest_shutdown_of_both_directions_resets_once_buffered_bytes_are_delivered()
    {
        Establish();
        FromGuest(VsockOp.ReadWrite, payload: [1, 2, 3]);

        FromGuest(VsockOp.Shutdown, flags: (uint)VsockShutdown.Both);

        Assert.Equal(ConnectionState.Killed, _connection.State);
        Assert.Equal(VsockOp.Reset, ToGuest()!.Header.Op);
    }

    [Fact]
    public void Host_end_of_stream_becomes_a_send_shutdown_and_host_hang_up_a_full_one()
    {
        Establish();
        LibC.shutdown(_host.Number, LibC.SHUT_WR);
        _connection.OnEvents(EventLoop.Readable);

        var shutdown = ToGuest()!;
        Assert.Equal((VsockOp.Shutdown, (uint)VsockShutdown.Send), (shutdown.Header.Op, shutdown.Header.Flags));
        Assert.Equal(ConnectionState.Established, _connection.State);

        _connection.OnEvents(EventLoop.HangUp);

        Assert.Equal(ConnectionState.LocalClosed, _connection.State);
        var full = ToGuest()!;
        Assert.Equal((VsockOp.Shutdown, (uint)VsockShutdown.Both), (full.Header.Op, full.Header.Flags));
        Assert.True(_connection.Deadline > _owner.Now);
    }
}
