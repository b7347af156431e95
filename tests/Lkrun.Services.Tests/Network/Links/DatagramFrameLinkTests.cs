using System.Buffers.Binary;
using System.Net.Sockets;
using Lkrun.Services.Network.Links;

namespace Lkrun.Services.Tests.Network.Links;

/// <summary>The datagram link with real unix sockets: a socket pair, and two sockets bound at paths as with QEMU.</summary>
public sealed class DatagramFrameLinkTests : IDisposable
{
    /// <summary>From the shortest Ethernet frame to the MTU's largest (65520 + 14) and the VLAN slack beyond it.</summary>
    private static readonly int[] Lengths = [14, 15, 60, 1514, 9000, 32768, 65534, FrameLimits.MaxFrameLength];

    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-dgram-").FullName;
    private readonly List<IDisposable> _owned = [];

    public void Dispose()
    {
        foreach (var owned in _owned)
        {
            owned.Dispose();
        }
        Directory.Delete(_directory, recursive: true);
    }

    private string LinkPath => Path.Combine(_directory, "net.sock");

    private string DevicePath => Path.Combine(_directory, "net-device.sock");

    private T Own<T>(T disposable)
        where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    private static byte[] FrameOf(int length, int seed)
    {
        var frame = new byte[length];
        for (var i = 0; i < length; i++)
        {
            frame[i] = (byte)(i * 7 + seed);
        }
        BinaryPrimitives.WriteInt32BigEndian(frame, seed);
        return frame;
    }

    private static Socket DeviceSocket(Socket socket)
    {
        socket.SendBufferSize = 1 << 20;
        socket.ReceiveTimeout = 20_000;
        return socket;
    }

    private (DatagramFrameLink Link, Socket Device) Pair()
    {
        var (network, device) = DatagramSocketPair.Create();
        var deviceSocket = Own(new Socket(device));
        deviceSocket.ReceiveTimeout = 20_000;
        return (Own(DatagramFrameLink.Adopt(network)), deviceSocket);
    }

    private DatagramFrameLink BindLink() => Own(DatagramFrameLink.Bind(LinkPath, DevicePath));

    private Socket BindDevice(string? path = null)
    {
        var socket = Own(DeviceSocket(new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified)));
        socket.Bind(new UnixDomainSocketEndPoint(path ?? DevicePath));
        return socket;
    }

    private byte[] ReceiveOn(Socket device)
    {
        var buffer = new byte[FrameLimits.MaxFrameLength + 100];
        return buffer.AsSpan(0, device.Receive(buffer)).ToArray();
    }

    private void SendFromDevice(Socket device, byte[] datagram)
    {
        if (device.Connected)
        {
            device.Send(datagram);
        }
        else
        {
            device.SendTo(datagram, new UnixDomainSocketEndPoint(LinkPath));
        }
    }

    /// <summary>Every length goes device to link and link to device, whole and in order.</summary>
    private void AssertFramesCrossBothWays(DatagramFrameLink link, Socket device)
    {
        var pump = new LinkPump(link);
        var dropped = link.DroppedFrames;
        var frames = Lengths.Select((length, i) => FrameOf(length, i)).ToList();
        foreach (var frame in frames)
        {
            SendFromDevice(device, frame);
        }
        pump.Until(() => pump.FromGuest.Count == frames.Count, "the device's frames");
        Assert.Equal(frames, pump.FromGuest);

        foreach (var frame in frames)
        {
            link.Deliver(frame);
        }
        link.Flush();
        Assert.Equal(frames, frames.Select(_ => ReceiveOn(device)));
        Assert.Equal(dropped, link.DroppedFrames);
    }

    [Fact]
    public void Frames_of_every_length_cross_a_socket_pair_whole_both_ways()
    {
        var (link, device) = Pair();
        Assert.True(link.IsConnected);
        AssertFramesCrossBothWays(link, device);
    }

    [Fact]
    public void Over_paths_frames_for_the_guest_are_dropped_until_the_device_speaks_then_cross_both_ways()
    {
        var link = BindLink();
        var device = BindDevice();
        link.Deliver(FrameOf(60, 1));
        Assert.False(link.IsConnected);
        Assert.Equal(1, link.DroppedFrames);

        var pump = new LinkPump(link);
        SendFromDevice(device, FrameOf(60, 2));
        pump.Until(() => pump.FromGuest.Count == 1, "the device's first frame");
        Assert.True(link.IsConnected);
        pump.FromGuest.Clear();
        AssertFramesCrossBothWays(link, device);
    }

    [Fact]
    public void Datagrams_of_bad_lengths_are_dropped_both_ways()
    {
        var (link, device) = Pair();
        var pump = new LinkPump(link);
        foreach (var length in new[] { 0, 1, 13, FrameLimits.MaxFrameLength + 1, 200_000 })
        {
            device.Send(new byte[length]);
        }
        var good = FrameOf(14, 9);
        device.Send(good);
        pump.Until(() => pump.FromGuest.Count == 1, "the good frame");
        Assert.Equal([good], pump.FromGuest);
        Assert.Equal(5, link.DroppedFrames);

        link.Deliver(new byte[FrameLimits.MaxFrameLength + 1]);
        link.Deliver(good);
        Assert.Equal(6, link.DroppedFrames);
        Assert.Equal(good, ReceiveOn(device));
    }

    [Fact]
    public void Over_paths_only_the_devices_socket_is_heard()
    {
        var link = BindLink();
        var pump = new LinkPump(link);
        var stranger = BindDevice(Path.Combine(_directory, "stranger.sock"));
        using var unbound = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        SendFromDevice(stranger, FrameOf(60, 1));
        unbound.SendTo(FrameOf(60, 2), new UnixDomainSocketEndPoint(LinkPath));
        pump.Until(() => link.DroppedFrames == 2, "the strangers' datagrams");
        Assert.Empty(pump.FromGuest);
        Assert.False(link.IsConnected);

        var device = BindDevice();
        SendFromDevice(device, FrameOf(60, 3));
        pump.Until(() => pump.FromGuest.Count == 1, "the device's frame");
        Assert.Equal([FrameOf(60, 3)], pump.FromGuest);
        // Connected to the device now, the kernel itself turns the stranger away.
        Assert.Throws<SocketException>(() => SendFromDevice(stranger, FrameOf(60, 4)));
    }

    [Fact]
    public void Frames_the_socket_cannot_take_yet_wait_and_go_out_in_order()
    {
        var (link, device) = Pair();
        const int count = 48;
        const int length = 65534;
        for (var i = 0; i < count; i++)
        {
            link.Deliver(FrameOf(length, i));
        }
        // The device has not read yet: what the socket's buffer did not hold waits in the link's queue.
        var pump = new LinkPump(link);
        var received = new List<int>();
        device.Blocking = false;
        var buffer = new byte[FrameLimits.MaxFrameLength + 1];
        pump.Until(() =>
        {
            while (device.Receive(buffer, SocketFlags.None, out var error) is var read && error == SocketError.Success)
            {
                Assert.Equal(length, read);
                received.Add(BinaryPrimitives.ReadInt32BigEndian(buffer));
            }
            return received.Count + link.DroppedFrames == count;
        }, "the queued frames");
        Assert.Equal(received.Order(), received);
        Assert.True(received.Count > link.SendBufferSize / length, $"{received.Count} frames arrived, no more than the socket buffer holds");
    }

    [Fact]
    public void Once_the_other_end_of_a_pair_is_closed_frames_are_dropped_and_the_link_stays_down()
    {
        var (link, device) = Pair();
        var pump = new LinkPump(link);
        device.Dispose();
        link.Deliver(FrameOf(60, 1));
        Assert.False(link.IsConnected);
        Assert.Equal(1, link.DroppedFrames);
        link.Deliver(FrameOf(60, 2));
        Assert.Equal(2, link.DroppedFrames);
        pump.Turn();
        Assert.Empty(pump.FromGuest);
    }

    [Fact]
    public void Over_paths_a_device_gone_is_noticed_at_the_next_send_and_a_new_one_is_heard_after()
    {
        var link = BindLink();
        var pump = new LinkPump(link);
        var first = BindDevice();
        SendFromDevice(first, FrameOf(60, 1));
        pump.Until(() => link.IsConnected, "the first device");
        first.Dispose();
        File.Delete(DevicePath);

        link.Deliver(FrameOf(60, 2));
        Assert.False(link.IsConnected);
        Assert.Equal(1, link.DroppedFrames);

        var second = BindDevice();
        SendFromDevice(second, FrameOf(60, 3));
        pump.Until(() => link.IsConnected, "the second device");
        link.Deliver(FrameOf(60, 4));
        Assert.Equal(FrameOf(60, 4), ReceiveOn(second));
        Assert.Equal([FrameOf(60, 1), FrameOf(60, 3)], pump.FromGuest);
    }

    [Fact]
    public void The_socket_buffers_are_raised_as_far_as_linux_allows()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "Linux's caps");
        var (link, _) = Pair();
        // Linux caps a request at net.core.wmem_max (rmem_max) and reports the capped value doubled.
        var sendCap = int.Parse(File.ReadAllText("/proc/sys/net/core/wmem_max"));
        var receiveCap = int.Parse(File.ReadAllText("/proc/sys/net/core/rmem_max"));
        Assert.Equal(2 * Math.Min(DatagramFrameLink.RequestedSendBuffer, sendCap), link.SendBufferSize);
        Assert.Equal(2 * Math.Min(DatagramFrameLink.RequestedReceiveBuffer, receiveCap), link.ReceiveBufferSize);
    }

    [Fact]
    public void The_devices_end_of_a_pair_has_the_raised_buffers_too()
    {
        var (_, device) = Pair();
        var (link, _) = Pair();
        Assert.Equal(link.SendBufferSize, device.SendBufferSize);
        Assert.Equal(link.ReceiveBufferSize, device.ReceiveBufferSize);
        Assert.True(device.SendBufferSize >= FrameLimits.MaxFrameLength, $"a frame does not fit {device.SendBufferSize} bytes");
    }

    [Fact]
    public void Disposing_a_link_at_paths_removes_both_socket_files()
    {
        var link = DatagramFrameLink.Bind(LinkPath, DevicePath);
        BindDevice();
        Assert.True(File.Exists(LinkPath));
        link.Dispose();
        Assert.False(File.Exists(LinkPath));
        Assert.False(File.Exists(DevicePath));
    }
}
