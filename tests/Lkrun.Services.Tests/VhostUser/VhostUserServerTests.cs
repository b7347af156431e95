using System.Buffers.Binary;
using System.Net.Sockets;
using Lkrun.Services.Interop;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Tests.VhostUser;

public class VhostUserServerTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-vu-").FullName;
    private readonly EventLoop _loop = new();
    private readonly Backend _backend = new();
    private readonly List<string> _log = [];
    private readonly VhostUserServer _server;

    public VhostUserServerTests()
    {
        _server = new VhostUserServer(SocketPath, _backend, _loop, _log.Add);
    }

    private string SocketPath => Path.Combine(_directory, "vhost.sock");

    public void Dispose()
    {
        _server.Dispose();
        _loop.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private sealed class Backend : IVhostUserBackend
    {
        public int Resets { get; private set; }

        public int QueueCount => 2;

        public ulong Features => VirtioFeatures.Version1;

        public bool TryReadConfig(uint offset, Span<byte> destination) => false;

        public void SetFeatures(ulong features)
        {
        }

        public void QueueReady(int index, SplitVirtqueue queue)
        {
        }

        public void QueueStopping(int index)
        {
        }

        public void QueueKicked(int index)
        {
        }

        public void Reset() => Resets++;
    }

    private Socket Connect()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 2000 };
        socket.Connect(new UnixDomainSocketEndPoint(SocketPath));
        return socket;
    }

    private static byte[] Header(uint request, uint flags = VhostUserHeader.Version)
    {
        var bytes = new byte[VhostUserHeader.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, request);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), flags);
        return bytes;
    }

    private void RunLoop()
    {
        for (var i = 0; i < 4; i++)
        {
            _loop.Wait(0);
        }
    }

    private ulong GetFeatures(Socket socket)
    {
        socket.Send(Header((uint)VhostUserRequest.GetFeatures));
        RunLoop();
        var reply = new byte[VhostUserHeader.Length + 8];
        Assert.Equal(reply.Length, socket.Receive(reply));
        return BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(VhostUserHeader.Length));
    }

    [Fact]
    public void Socket_is_private_to_its_owner()
    {
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, new FileInfo(SocketPath).UnixFileMode);
    }

    [Fact]
    public void Front_end_is_served_and_a_second_one_refused()
    {
        using var first = Connect();
        Assert.Equal(VirtioFeatures.Version1 | VirtioFeatures.VhostUserProtocolFeatures, GetFeatures(first));

        using var second = Connect();
        RunLoop();

        Assert.Equal(0, second.Receive(new byte[1]));
        Assert.Contains(_log, line => line.Contains("second front-end"));
        Assert.True(_server.IsConnected);
    }

    [Fact]
    public void Broken_front_end_is_dropped_and_the_next_one_served()
    {
        using (var broken = Connect())
        {
            broken.Send(Header((uint)VhostUserRequest.GetFeatures, flags: 2));
            RunLoop();

            Assert.Equal(0, broken.Receive(new byte[1]));
            Assert.False(_server.IsConnected);
            Assert.Equal(1, _backend.Resets);
            Assert.Contains(_log, line => line.Contains("protocol version"));
        }

        using var next = Connect();
        Assert.Equal(VirtioFeatures.Version1 | VirtioFeatures.VhostUserProtocolFeatures, GetFeatures(next));
    }

    [Fact]
    public void Front_end_leaving_resets_the_device_quietly()
    {
        using (var frontEnd = Connect())
        {
            GetFeatures(frontEnd);
        }

        RunLoop();

        Assert.False(_server.IsConnected);
        Assert.Equal(1, _backend.Resets);
        Assert.Empty(_log);
    }

    [Fact]
    public void Socket_in_use_cannot_be_bound_twice_but_a_stale_one_is_replaced()
    {
        using var loop = new EventLoop();
        var error = Assert.Throws<IOException>(() => new VhostUserServer(SocketPath, _backend, loop, null));
        Assert.Contains("already in use", error.Message);

        var stale = Path.Combine(_directory, "stale.sock");
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            socket.Bind(new UnixDomainSocketEndPoint(stale));
        }

        using var replacement = new VhostUserServer(stale, _backend, loop, null);
        Assert.True(LibC.IsSocketFile(stale));
    }
}
