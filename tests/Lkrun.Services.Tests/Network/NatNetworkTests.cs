using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Lkrun.Services.Faults;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network;

/// <summary>
/// The NAT network with libslirp, driven through its link as the engine drives it, by a test that plays the
/// guest's network device frame by frame. No VM is involved. Every test runs over each kind of link (the derived
/// classes below).
/// </summary>
public abstract class NatNetworkTests : IAsyncDisposable
{
    protected static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    protected readonly string Directory = System.IO.Directory.CreateTempSubdirectory("lkrun-slirp-").FullName;

    private NatNetwork? _network;

    public async ValueTask DisposeAsync()
    {
        if (_network is not null)
        {
            Assert.False(_network.Completion.IsFaulted, "the network stopped by itself");
            await _network.DisposeAsync();
        }
        DisposeLink();
        System.IO.Directory.Delete(Directory, recursive: true);
    }

    /// <summary>lkrun's end of the link for a new network.</summary>
    protected abstract FrameLinkEndpoint NewLink();

    /// <summary>The device's end of the link that <see cref="NewLink"/> made, ready to carry frames.</summary>
    private protected abstract Task<FakeDevice> ConnectAsync();

    /// <summary>The socket files the link made, which must be gone once the network has stopped.</summary>
    protected abstract IEnumerable<string> LinkFiles { get; }

    protected virtual void DisposeLink()
    {
    }

    protected GuestNetwork Network(params PublishedPort[] ports) =>
        new(NetworkMode.Vmnet, GuestMac, Leased, new ValueList<PublishedPort>(ports), NewLink());

    protected NatNetwork Start(params PublishedPort[] ports)
    {
        _network = NatNetwork.Start(Network(ports));
        return _network;
    }

    [Fact]
    public async Task Dhcp_over_the_link_is_answered_with_the_leased_address()
    {
        Start();
        await using var device = await ConnectAsync();
        await device.SendAsync(ClientDhcp(new DhcpOptions(1), broadcast: true));
        var offer = await device.ReceiveAsync(IsDhcpReply);
        Assert.True(DhcpOf(offer, out var yourAddress, out var type));
        Assert.Equal((DhcpMessageType.Offer, Leased), (type, yourAddress));
    }

    [Fact]
    public async Task The_gateway_and_the_dns_server_answer_arp_with_libslirps_macs()
    {
        Start();
        await using var device = await ConnectAsync();
        foreach (var (address, mac) in new[] { (Gateway, SlirpStack.GatewayMac), (NatSubnet.Dns, MacAddress.FromBytes([0x52, 0x55, 192, 168, 65, 254])) })
        {
            await device.SendAsync(ArpRequest(Leased, address));
            var reply = await device.ReceiveAsync(frame => IsArp(frame, operation: 2));
            Assert.Equal(Mac(mac), reply.AsSpan(22, 6).ToArray());
            Assert.Equal(address.GetAddressBytes(), reply.AsSpan(28, 4).ToArray());
            Assert.Equal(Mac(GuestMac), reply.AsSpan(0, 6).ToArray());
        }
    }

    [Fact]
    public async Task Malformed_frames_are_dropped_and_the_network_carries_on()
    {
        Start();
        await using var device = await ConnectAsync();
        var random = new Random(5);
        var dhcp = ClientDhcp(new DhcpOptions(1), broadcast: true);
        var badIpv4 = (byte[])dhcp.Clone();
        BinaryPrimitives.WriteUInt16BigEndian(badIpv4.AsSpan(14 + 2), 9000);
        var shortIhl = (byte[])dhcp.Clone();
        shortIhl[14] = 0x41;
        var ipv6 = Ethernet(GuestMac, MacAddress.Broadcast, 0x86dd, new byte[80]);
        var shortArp = Ethernet(GuestMac, MacAddress.Broadcast, 0x0806, new byte[10]);
        foreach (var frame in new[] { badIpv4, shortIhl, ipv6, shortArp, new byte[14], dhcp.AsSpan(0, 20).ToArray() })
        {
            await device.SendAsync(frame);
        }
        for (var i = 0; i < 300; i++)
        {
            var frame = new byte[random.Next(0, 2000)];
            random.NextBytes(frame);
            await device.SendAsync(frame);
        }
        // Lengths beyond the MTU with their bytes, and lengths too short for Ethernet, each as the link frames them.
        await device.SendBadLengthsAsync();
        await device.SendAsync(dhcp);
        Assert.True(DhcpOf(await device.ReceiveAsync(IsDhcpReply), out var address, out _));
        Assert.Equal(Leased, address);
    }

    /// <summary>
    /// libslirp 4.7 writes through a wild pointer when it reassembles a datagram whose last fragment came first
    /// (this pair killed lkrun with SIGSEGV or SIGBUS), so the network keeps every fragment from it.
    /// </summary>
    [Fact]
    public async Task Ipv4_fragments_out_of_order_never_reach_libslirp_and_the_network_carries_on()
    {
        Start();
        await using var device = await ConnectAsync();
        for (ushort id = 1; id <= 3; id++)
        {
            await device.SendAsync(Fragment(id, offsetUnits: 8, moreFragments: false, new byte[64]));
            await device.SendAsync(Fragment(id, offsetUnits: 0, moreFragments: true, new byte[64]));
        }
        await device.SendAsync(ClientDhcp(new DhcpOptions(1), broadcast: true));
        Assert.True(DhcpOf(await device.ReceiveAsync(IsDhcpReply), out var address, out _));
        Assert.Equal(Leased, address);
    }

    /// <summary>A UDP-protocol IPv4 fragment from the guest to the gateway, with a correct header checksum.</summary>
    private static byte[] Fragment(ushort id, int offsetUnits, bool moreFragments, byte[] payload)
    {
        var packet = Ipv4(17, Leased, Gateway, payload);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(6), (ushort)((moreFragments ? 0x2000 : 0) | offsetUnits));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), 0);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), (ushort)~OnesComplementSum(packet.AsSpan(0, 20)));
        return Ethernet(GuestMac, SlirpStack.GatewayMac, 0x0800, packet);
    }

    [Fact]
    public async Task A_published_tcp_port_reaches_the_guest_address()
    {
        var port = FreePort();
        Start(new PublishedPort(IPAddress.Loopback, port, 80, PortProtocol.Tcp));
        await using var device = await ConnectAsync();
        using var client = new TcpClient();
        var connecting = client.ConnectAsync(IPAddress.Loopback, port, TestContext.Current.CancellationToken);
        // libslirp first asks for the guest's MAC, then opens the connection to the guest's port.
        var request = await device.ReceiveAsync(frame => IsArp(frame, operation: 1));
        Assert.Equal(Leased.GetAddressBytes(), request.AsSpan(38, 4).ToArray());
        await device.SendAsync(ArpReply(Leased, SlirpStack.GatewayMac, Gateway));
        var syn = await device.ReceiveAsync(frame => frame.Length >= 54 && frame[12] == 8 && frame[13] == 0 && frame[23] == 6);
        Assert.Equal(Leased.GetAddressBytes(), syn.AsSpan(30, 4).ToArray());
        Assert.Equal(80, BinaryPrimitives.ReadUInt16BigEndian(syn.AsSpan(36)));
        Assert.Equal(0x02, syn[47] & 0x12);
        Assert.False(connecting.IsFaulted);
    }

    [Fact]
    public async Task The_guest_reaches_the_hosts_loopback_through_the_gateway()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = (ushort)((IPEndPoint)listener.LocalEndpoint).Port;
        Start();
        await using var device = await ConnectAsync();
        await device.SendAsync(ArpRequest(Leased, Gateway));
        await device.ReceiveAsync(frame => IsArp(frame, operation: 2));
        await device.SendAsync(TcpSyn(Leased, 40000, Gateway, port, 1000));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(Patience);
        using var accepted = await listener.AcceptTcpClientAsync(timeout.Token);
        Assert.Equal(IPAddress.Loopback, ((IPEndPoint)accepted.Client.RemoteEndPoint!).Address);
    }

    [Fact]
    public void A_published_port_taken_since_the_preflight_is_refused_naming_the_flag_and_leaves_nothing()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var published = new PublishedPort(IPAddress.Loopback, port, 22, PortProtocol.Tcp);
        var error = Assert.Throws<NetworkException>(() => NatNetwork.Start(Network(published)));
        Assert.Equal(2, error.ExitCode);
        Assert.Equal($"-publish 127.0.0.1:{port}:22/tcp: tcp port 127.0.0.1:{port} is already in use on this host", error.Message);
        Assert.All(LinkFiles, file => Assert.False(File.Exists(file)));
    }

    [Fact]
    public async Task Stopping_completes_the_network_and_removes_its_sockets()
    {
        var network = Start();
        await using (var device = await ConnectAsync())
        {
            await device.SendAsync(ClientDhcp(new DhcpOptions(1), broadcast: true));
            await device.ReceiveAsync(IsDhcpReply);
        }
        await network.DisposeAsync();
        Assert.True(network.Completion.IsCompletedSuccessfully);
        Assert.All(LinkFiles, file => Assert.False(File.Exists(file)));
        await network.DisposeAsync();
    }

    [Fact]
    public async Task An_injected_fault_stops_the_network_with_one_line_and_removes_its_sockets()
    {
        var network = NatNetwork.Start(Network(), failAfter: TimeSpan.FromMilliseconds(300));
        await using (var device = await ConnectAsync())
        {
            var error = await Assert.ThrowsAsync<NetworkException>(() => network.Completion.WaitAsync(Patience, TestContext.Current.CancellationToken));
            Assert.Equal("the NAT network stopped: fault injected by LKRUN_FAULT into network", error.Message);
            Assert.Equal(1, error.ExitCode);
        }
        Assert.All(LinkFiles, file => Assert.False(File.Exists(file)));
        // Stopping a network that failed is quiet: the failure was Completion's to report.
        await network.DisposeAsync();
    }

    [Fact]
    public void The_fault_hook_names_the_network_network()
    {
        Assert.Equal(TimeSpan.FromSeconds(8), FaultInjection.Parse("vsock=5,network=8")[NatNetwork.ServiceName]);
    }

    protected static bool IsArp(byte[] frame, int operation) =>
        frame.Length >= 42 && frame[12] == 8 && frame[13] == 6 && BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(20)) == operation;

    protected static bool IsDhcpReply(byte[] frame) => DhcpOf(frame, out _, out _);

    protected static bool DhcpOf(byte[] frame, out IPAddress yourAddress, out DhcpMessageType? type)
    {
        yourAddress = IPAddress.None;
        type = null;
        if (!EthernetFrame.TryParse(frame, out var ethernet) || !Ipv4Packet.TryParse(ethernet.Payload, out var ip) ||
            !UdpDatagram.TryParse(ip.Payload, out var udp) || udp.DestinationPort != 68 || !DhcpMessage.TryParse(udp.Payload, out var dhcp))
        {
            return false;
        }
        yourAddress = Ipv4Packet.ToAddress(dhcp.YourAddress);
        type = dhcp.MessageType;
        return true;
    }

    protected static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}

/// <summary>Over QEMU's <c>-netdev stream</c>: length-prefixed frames on a unix stream socket lkrun listens on.</summary>
public sealed class NatNetworkOverStreamTests : NatNetworkTests
{
    private string SocketPath => Path.Combine(Directory, "net.sock");

    protected override FrameLinkEndpoint NewLink() => new StreamLinkEndpoint(SocketPath);

    protected override IEnumerable<string> LinkFiles => [SocketPath];

    private protected override async Task<FakeDevice> ConnectAsync() => await StreamDevice.ConnectAsync(SocketPath);

    [Fact]
    public async Task Qemu_may_connect_again_mid_frame()
    {
        Start();
        Assert.True(File.Exists(SocketPath));
        await using (var first = await StreamDevice.ConnectAsync(SocketPath))
        {
            var frame = ClientDhcp(new DhcpOptions(1), broadcast: true);
            await first.SendRawAsync([.. BigEndian((uint)frame.Length), .. frame.AsSpan(0, 100)]);
        }
        await using (var second = await StreamDevice.ConnectAsync(SocketPath))
        {
            await second.SendAsync(ClientDhcp(new DhcpOptions(1), broadcast: true));
            Assert.True(DhcpOf(await second.ReceiveAsync(IsDhcpReply), out var address, out _));
            Assert.Equal(Leased, address);
        }
    }
}

/// <summary>Over QEMU's <c>-netdev dgram</c>: each side binds its own path, and QEMU sends to lkrun's.</summary>
public sealed class NatNetworkOverDatagramPathsTests : NatNetworkTests
{
    private string SocketPath => Path.Combine(Directory, "net.sock");

    private string DevicePath => Path.Combine(Directory, "net-device.sock");

    protected override FrameLinkEndpoint NewLink() => new DatagramPathsEndpoint(SocketPath, DevicePath);

    protected override IEnumerable<string> LinkFiles => [SocketPath, DevicePath];

    /// <summary>Binds the device's path as QEMU does, and speaks first as the guest does (DHCP), which connects lkrun.</summary>
    private protected override async Task<FakeDevice> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(DevicePath));
        var device = new DatagramDevice(socket, new UnixDomainSocketEndPoint(SocketPath));
        await device.SendAsync(ClientDhcp(new DhcpOptions(1), broadcast: true));
        await device.ReceiveAsync(IsDhcpReply);
        return device;
    }
}

/// <summary>Over a connected socket pair, as Virtualization.framework gets the other end.</summary>
public sealed class NatNetworkOverSocketPairTests : NatNetworkTests
{
    private Socket? _device;

    protected override FrameLinkEndpoint NewLink()
    {
        _device?.Dispose();
        var (network, device) = DatagramSocketPair.Create();
        _device = new Socket(device);
        return new DatagramSocketEndpoint(network);
    }

    protected override IEnumerable<string> LinkFiles => [];

    private protected override Task<FakeDevice> ConnectAsync() => Task.FromResult<FakeDevice>(new DatagramDevice(_device!, null));

    protected override void DisposeLink() => _device?.Dispose();

    [Fact]
    public async Task Once_the_devices_end_is_closed_the_network_carries_on_without_it()
    {
        var port = FreePort();
        var network = Start(new PublishedPort(IPAddress.Loopback, port, 80, PortProtocol.Tcp));
        await using (var device = await ConnectAsync())
        {
            await device.SendAsync(ArpRequest(Leased, Gateway));
            await device.ReceiveAsync(frame => IsArp(frame, operation: 2));
        }
        // A connection to the published port makes libslirp send the guest frames, which find the pair's end closed.
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, TestContext.Current.CancellationToken);
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.False(network.Completion.IsCompleted);
        await network.DisposeAsync();
        Assert.True(network.Completion.IsCompletedSuccessfully);
    }
}

/// <summary>A device's datagram socket: bound at its path and sending to lkrun's, or the device's end of a pair.</summary>
internal sealed class DatagramDevice(Socket socket, UnixDomainSocketEndPoint? lkrun) : FakeDevice
{
    private readonly byte[] _buffer = new byte[70_000];

    public override async Task SendAsync(byte[] frame)
    {
        if (lkrun is null)
        {
            await socket.SendAsync(frame, TestContext.Current.CancellationToken);
        }
        else
        {
            await socket.SendToAsync(frame, lkrun, TestContext.Current.CancellationToken);
        }
    }

    public override async Task SendBadLengthsAsync()
    {
        socket.SendBufferSize = 1 << 20;
        await SendAsync(new byte[200_000]);
        await SendAsync(new byte[FrameLimits.MaxFrameLength + 1]);
        await SendAsync([1, 2, 3]);
        await SendAsync([]);
    }

    protected override async Task<byte[]> ReceiveFrameAsync(CancellationToken cancellation)
    {
        var received = await socket.ReceiveAsync(_buffer, cancellation);
        return _buffer.AsSpan(0, received).ToArray();
    }

    public override ValueTask DisposeAsync()
    {
        socket.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>The guest's network device, as the engine's end of the link.</summary>
internal abstract class FakeDevice : IAsyncDisposable
{
    public abstract Task SendAsync(byte[] frame);

    /// <summary>Frames of lengths the link must drop: too long (with all their bytes) and too short.</summary>
    public abstract Task SendBadLengthsAsync();

    protected abstract Task<byte[]> ReceiveFrameAsync(CancellationToken cancellation);

    /// <summary>The next frame for the guest that <paramref name="wanted"/> accepts; others are passed over.</summary>
    public async Task<byte[]> ReceiveAsync(Func<byte[], bool> wanted)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(20));
        while (true)
        {
            var frame = await ReceiveFrameAsync(timeout.Token);
            if (wanted(frame))
            {
                return frame;
            }
        }
    }

    public abstract ValueTask DisposeAsync();
}

/// <summary>QEMU's end of <c>-netdev stream</c>.</summary>
internal sealed class StreamDevice(Socket socket) : FakeDevice
{
    private readonly NetworkStream _stream = new(socket, ownsSocket: true);
    private readonly byte[] _prefix = new byte[4];

    public static async Task<StreamDevice> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), TestContext.Current.CancellationToken);
        return new StreamDevice(socket);
    }

    public override Task SendAsync(byte[] frame) => SendRawAsync([.. BigEndian((uint)frame.Length), .. frame]);

    public override async Task SendBadLengthsAsync()
    {
        await SendRawAsync([.. BigEndian(200_000), .. new byte[200_000]]);
        await SendRawAsync([.. BigEndian(3), 1, 2, 3, .. BigEndian(0)]);
    }

    public async Task SendRawAsync(byte[] bytes) => await _stream.WriteAsync(bytes, TestContext.Current.CancellationToken);

    protected override async Task<byte[]> ReceiveFrameAsync(CancellationToken cancellation)
    {
        await _stream.ReadExactlyAsync(_prefix, cancellation);
        var frame = new byte[BinaryPrimitives.ReadUInt32BigEndian(_prefix)];
        await _stream.ReadExactlyAsync(frame, cancellation);
        return frame;
    }

    public override ValueTask DisposeAsync() => _stream.DisposeAsync();
}
