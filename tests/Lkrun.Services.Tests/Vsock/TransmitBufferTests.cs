using Lkrun.Services.Interop;
using Lkrun.Services.Vsock;

namespace Lkrun.Services.Tests.Vsock;

public class TransmitBufferTests
{
    [Fact]
    public void Bytes_wrap_around_the_ring_in_order()
    {
        var buffer = new TransmitBuffer(8);
        Assert.True(buffer.TryAppend("abcdef"u8));
        buffer.Consume(4);
        Assert.True(buffer.TryAppend("ghijkl"u8));
        Assert.False(buffer.TryAppend("m"u8));

        var peeked = new byte[8];
        Assert.Equal(8, buffer.Peek(peeked));
        Assert.Equal("efghijkl"u8.ToArray(), peeked);
    }

    [Fact]
    public void Write_drains_into_a_socket_and_releases_the_array()
    {
        var (writer, reader) = UnixSocket.Pair(nonBlocking: true);
        using (writer)
        using (reader)
        {
            var buffer = new TransmitBuffer(8);
            buffer.TryAppend("abcdef"u8);
            buffer.Consume(5);
            buffer.TryAppend("ghijklm"u8);

            Assert.Equal(8, buffer.WriteTo(writer.Number));
            Assert.True(buffer.IsEmpty);

            var received = new byte[16];
            var count = UnixSocket.Receive(reader.Number, received, new int[1], out _);
            Assert.Equal("fghijklm"u8.ToArray(), received[..count]);
        }
    }
}
