using System.Buffers.Binary;
using Lkrun.Services.Interop;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Tests.VhostUser;

public class VhostUserEndpointTests : IDisposable
{
    private readonly FileDescriptor _frontEnd;
    private readonly VhostUserEndpoint _endpoint;

    public VhostUserEndpointTests()
    {
        var (frontEnd, backEnd) = UnixSocket.Pair(nonBlocking: false);
        _frontEnd = frontEnd;
        _endpoint = new VhostUserEndpoint(backEnd);
    }

    public void Dispose()
    {
        _endpoint.Dispose();
        _frontEnd.Dispose();
    }

    private static byte[] Frame(VhostUserRequest request, uint flags, byte[] body)
    {
        var bytes = new byte[VhostUserHeader.Length + body.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)request);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), (uint)body.Length);
        body.CopyTo(bytes, VhostUserHeader.Length);
        return bytes;
    }

    [Fact]
    public void Message_arrives_with_its_body_and_descriptors()
    {
        using var kick = EventFd.Create();
        Assert.Equal(0, UnixSocket.SendAll(_frontEnd.Number, Frame(VhostUserRequest.SetVringKick, 1, [1, 0, 0, 0, 0, 0, 0, 0]), [kick.Number]));

        using var message = _endpoint.Receive();

        Assert.NotNull(message);
        Assert.Equal(VhostUserRequest.SetVringKick, message.Header.Request);
        Assert.Equal(8, message.Body.Length);
        var received = Assert.Single(message.Descriptors);
        EventFd.Signal(received.Number);
        Assert.True(EventFd.Drain(kick.Number));
    }

    [Fact]
    public void Reply_carries_the_reply_flag_and_body()
    {
        var request = new VhostUserHeader(VhostUserRequest.GetFeatures, VhostUserHeader.Version, 0);

        _endpoint.Reply(request, [1, 2, 3, 4, 5, 6, 7, 8]);

        var buffer = new byte[64];
        var length = UnixSocket.Receive(_frontEnd.Number, buffer, new int[8], out _);
        Assert.Equal(VhostUserHeader.Length + 8, length);
        Assert.Equal(VhostUserHeader.Version | VhostUserHeader.ReplyFlag, BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(4)));
        Assert.Equal(8, buffer[VhostUserHeader.Length + 7]);
    }

    [Fact]
    public void Closed_connection_reads_as_no_message()
    {
        _frontEnd.Dispose();

        Assert.Null(_endpoint.Receive());
    }

    [Fact]
    public void Connection_closed_inside_a_message_is_a_protocol_error()
    {
        var frame = Frame(VhostUserRequest.SetFeatures, 1, new byte[8]);
        Assert.Equal(0, UnixSocket.SendAll(_frontEnd.Number, frame.AsSpan(0, 15), []));
        _frontEnd.Dispose();

        Assert.Throws<VhostUserProtocolException>(() => _endpoint.Receive());
    }

    [Fact]
    public void Descriptors_sent_with_the_body_are_refused_and_closed()
    {
        using var extra = EventFd.Create();
        var frame = Frame(VhostUserRequest.SetFeatures, 1, new byte[8]);
        Assert.Equal(0, UnixSocket.SendAll(_frontEnd.Number, frame.AsSpan(0, VhostUserHeader.Length), []));
        Assert.Equal(0, UnixSocket.SendAll(_frontEnd.Number, frame.AsSpan(VhostUserHeader.Length), [extra.Number]));

        Assert.Throws<VhostUserProtocolException>(() => _endpoint.Receive());
    }

    [Fact]
    public void Oversized_body_is_refused_before_it_is_read()
    {
        var header = Frame(VhostUserRequest.SetMemTable, 1, []);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), VhostUserLimits.MaxBodySize + 1);
        Assert.Equal(0, UnixSocket.SendAll(_frontEnd.Number, header, []));

        Assert.Throws<VhostUserProtocolException>(() => _endpoint.Receive());
    }
}
