using System.Buffers.Binary;
using System.Net.Sockets;
using Lkrun.Services.Network.Links;

namespace Lkrun.Services.Tests.Network.Links;

/// <summary>The stream link with real unix sockets, the test playing QEMU's <c>-netdev stream</c>.</summary>
public sealed class StreamFrameLinkTests : IDisposable
{
    private static readonly int[] Lengths = [14, 15, 60, 1514, 9000, 32768, 65534, FrameLimits.MaxFrameLength];

    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-stream-").FullName;
    private readonly StreamFrameLink _link;
    private readonly LinkPump _pump;

    public StreamFrameLinkTests()
    {
        _link = StreamFrameLink.Listen(SocketPath);
        _pump = new LinkPump(_link);
    }

    public void Dispose()
    {
        _link.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private string SocketPath => Path.Combine(_directory, "net.sock");

    private static byte[] FrameOf(int length, int seed) => [.. Enumerable.Range(0, length).Select(i => (byte)(i * 7 + seed))];

    private static byte[] Prefixed(byte[] frame) => [.. TestFrames.BigEndian((uint)frame.Length), .. frame];

    private NetworkStream Connect()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(SocketPath));
        var stream = new NetworkStream(socket, ownsSocket: true);
        // The link takes the connection on its next turn.
        _pump.Turn();
        return stream;
    }

    private byte[] ReadFrame(NetworkStream qemu)
    {
        var prefix = new byte[4];
        _pump.While(qemu.ReadExactlyAsync(prefix, TestContext.Current.CancellationToken).AsTask());
        var frame = new byte[BinaryPrimitives.ReadUInt32BigEndian(prefix)];
        _pump.While(qemu.ReadExactlyAsync(frame, TestContext.Current.CancellationToken).AsTask());
        return frame;
    }

    [Fact]
    public void Frames_of_every_length_cross_whole_both_ways()
    {
        using var qemu = Connect();
        var frames = Lengths.Select((length, i) => FrameOf(length, i)).ToList();
        _pump.While(qemu.WriteAsync(frames.SelectMany(Prefixed).ToArray(), TestContext.Current.CancellationToken).AsTask());
        _pump.Until(() => _pump.FromGuest.Count == frames.Count, "the frames");
        Assert.Equal(frames, _pump.FromGuest);

        foreach (var frame in frames)
        {
            _link.Deliver(frame);
        }
        Assert.Equal(frames, frames.Select(_ => ReadFrame(qemu)));
        Assert.Equal(0, _link.DroppedFrames);
    }

    [Fact]
    public void Frames_of_bad_lengths_are_skipped_with_their_bytes_both_ways()
    {
        using var qemu = Connect();
        var good = FrameOf(14, 1);
        byte[] stream =
        [
            .. TestFrames.BigEndian(0), .. Prefixed(FrameOf(13, 2)), .. Prefixed(FrameOf(FrameLimits.MaxFrameLength + 1, 3)),
            .. TestFrames.BigEndian(200_000), .. new byte[200_000], .. Prefixed(good),
        ];
        _pump.While(qemu.WriteAsync(stream, TestContext.Current.CancellationToken).AsTask());
        _pump.Until(() => _pump.FromGuest.Count == 1, "the good frame");
        Assert.Equal([good], _pump.FromGuest);
        Assert.Equal(4, _link.DroppedFrames);

        _link.Deliver(new byte[FrameLimits.MaxFrameLength + 1]);
        _link.Deliver(good);
        Assert.Equal(5, _link.DroppedFrames);
        Assert.Equal(good, ReadFrame(qemu));
    }

    [Fact]
    public void When_qemu_goes_away_frames_are_dropped_until_it_connects_again()
    {
        using (var first = Connect())
        {
            _pump.While(first.WriteAsync(Prefixed(FrameOf(60, 1)), TestContext.Current.CancellationToken).AsTask());
            _pump.Until(() => _pump.FromGuest.Count == 1, "the first frame");
        }
        // The link notices the end of the stream on its next turn.
        _pump.Turn();
        _link.Deliver(FrameOf(60, 2));
        Assert.Equal(1, _link.DroppedFrames);

        using var second = Connect();
        _link.Deliver(FrameOf(60, 3));
        Assert.Equal(FrameOf(60, 3), ReadFrame(second));
    }

    [Fact]
    public void Disposing_removes_the_socket_file()
    {
        Assert.True(File.Exists(SocketPath));
        _link.Dispose();
        Assert.False(File.Exists(SocketPath));
    }
}
