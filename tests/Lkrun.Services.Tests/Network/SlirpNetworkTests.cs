using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Lkrun.Services.Network;
using Lkrun.Spec;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network;

/// <summary>
/// The NAT network with libslirp, driven through its socket as QEMU drives it, by a test that plays the guest
/// frame by frame. No VM is involved.
/// </summary>
public sealed class SlirpNetworkTests : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-slirp-").FullName;
    private readonly List<string> _failures = [];
    private SlirpNetwork? _network;

    public async ValueTask DisposeAsync()
    {
        if (_network is not null)
        {
            await _network.DisposeAsync();
        }
        Directory.Delete(_directory, recursive: true);
        Assert.Empty(_failures);
    }

    private string SocketPath => Path.Combine(_directory, SlirpNetwork.SocketName);

    private GuestNetwork Network(params PublishedPort[] ports) =>
        new(NetworkMode.Vmnet, GuestMac, Leased, new ValueList<PublishedPort>(ports), SocketPath);

    private SlirpNetwork Start(params PublishedPort[] ports)
    {
        _network = SlirpNetwork.Start(Network(ports), _failures.Add);
        return _network;
    }

    [Fact]
    public async Task Dhcp_over_the_socket_is_answered_with_the_leased_address()
    {
        Start();
        await using var qemu = await FakeQemu.ConnectAsync(SocketPath);
        await qemu.SendAsync(Dhcp(new DhcpOptions(1), broadcast: true));
        var offer = await qemu.ReceiveAsync(IsDhcpReply);
        Assert.True(DhcpOf(offer, out var yourAddress, out var type));
        Assert.Equal((DhcpMessageType.Offer, Leased), (type, yourAddress));
    }

    [Fact]
    public async Task The_gateway_and_the_dns_server_answer_arp_with_libslirps_macs()
    {
        Start();
        await using var qemu = await FakeQemu.ConnectAsync(SocketPath);
        foreach (var (address, mac) in new[] { (Gateway, SlirpNetwork.GatewayMac), (NatNetwork.Dns, MacAddress.FromBytes([0x52, 0x55, 192, 168, 65, 254])) })
        {
            await qemu.SendAsync(ArpRequest(Leased, address));
            var reply = await qemu.ReceiveAsync(frame => IsArp(frame, operation: 2));
            Assert.Equal(Mac(mac), reply.AsSpan(22, 6).ToArray());
            Assert.Equal(address.GetAddressBytes(), reply.AsSpan(28, 4).ToArray());
            Assert.Equal(Mac(GuestMac), reply.AsSpan(0, 6).ToArray());
        }
    }

    [Fact]
    public async Task Malformed_frames_are_dropped_and_the_network_carries_on()
    {
        Start();
        await using var qemu = await FakeQemu.ConnectAsync(SocketPath);
        var random = new Random(5);
        var dhcp = Dhcp(new DhcpOptions(1), broadcast: true);
        var badIpv4 = (byte[])dhcp.Clone();
        BinaryPrimitives.WriteUInt16BigEndian(badIpv4.AsSpan(14 + 2), 9000);
        var shortIhl = (byte[])dhcp.Clone();
        shortIhl[14] = 0x41;
        var ipv6 = Ethernet(GuestMac, MacAddress.Broadcast, 0x86dd, new byte[80]);
        var shortArp = Ethernet(GuestMac, MacAddress.Broadcast, 0x0806, new byte[10]);
        foreach (var frame in new[] { badIpv4, shortIhl, ipv6, shortArp, new byte[14], dhcp.AsSpan(0, 20).ToArray() })
        {
            await qemu.SendAsync(frame);
        }
        for (var i = 0; i < 300; i++)
        {
            var frame = new byte[random.Next(0, 2000)];
            random.NextBytes(frame);
            await qemu.SendRawAsync([.. BigEndian((uint)frame.Length), .. frame]);
        }
        // A length beyond the MTU with its bytes, and lengths too short for Ethernet.
        await qemu.SendRawAsync([.. BigEndian(200_000), .. new byte[200_000]]);
        await qemu.SendRawAsync([.. BigEndian(3), 1, 2, 3, .. BigEndian(0)]);
        await qemu.SendAsync(dhcp);
        Assert.True(DhcpOf(await qemu.ReceiveAsync(IsDhcpReply), out var address, out _));
        Assert.Equal(Leased, address);
    }

    [Fact]
    public async Task A_published_tcp_port_reaches_the_guest_address()
    {
        var port = FreePort();
        Start(new PublishedPort(IPAddress.Loopback, port, 80, PortProtocol.Tcp));
        await using var qemu = await FakeQemu.ConnectAsync(SocketPath);
        using var client = new TcpClient();
        var connecting = client.ConnectAsync(IPAddress.Loopback, port, TestContext.Current.CancellationToken);
        // libslirp first asks for the guest's MAC, then opens the connection to the guest's port.
        var request = await qemu.ReceiveAsync(frame => IsArp(frame, operation: 1));
        Assert.Equal(Leased.GetAddressBytes(), request.AsSpan(38, 4).ToArray());
        await qemu.SendAsync(ArpReply(Leased, SlirpNetwork.GatewayMac, Gateway));
        var syn = await qemu.ReceiveAsync(frame => frame.Length >= 54 && frame[12] == 8 && frame[13] == 0 && frame[23] == 6);
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
        await using var qemu = await FakeQemu.ConnectAsync(SocketPath);
        await qemu.SendAsync(ArpRequest(Leased, Gateway));
        await qemu.ReceiveAsync(frame => IsArp(frame, operation: 2));
        await qemu.SendAsync(TcpSyn(Leased, 40000, Gateway, port, 1000));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(Patience);
        using var accepted = await listener.AcceptTcpClientAsync(timeout.Token);
        Assert.Equal(IPAddress.Loopback, ((IPEndPoint)accepted.Client.RemoteEndPoint!).Address);
    }

    [Fact]
    public void A_published_port_taken_since_the_preflight_is_refused_naming_the_flag()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var published = new PublishedPort(IPAddress.Loopback, port, 22, PortProtocol.Tcp);
        var error = Assert.Throws<NetworkException>(() => SlirpNetwork.Start(Network(published), _failures.Add));
        Assert.Equal(2, error.ExitCode);
        Assert.Equal($"-publish 127.0.0.1:{port}:22/tcp: tcp port 127.0.0.1:{port} is already in use on this host", error.Message);
        Assert.False(File.Exists(SocketPath));
    }

    [Fact]
    public async Task Qemu_may_connect_again_mid_frame_and_stopping_removes_the_socket()
    {
        var network = Start();
        Assert.True(File.Exists(SocketPath));
        await using (var first = await FakeQemu.ConnectAsync(SocketPath))
        {
            var frame = Dhcp(new DhcpOptions(1), broadcast: true);
            await first.SendRawAsync([.. BigEndian((uint)frame.Length), .. frame.AsSpan(0, 100)]);
        }
        await using (var second = await FakeQemu.ConnectAsync(SocketPath))
        {
            await second.SendAsync(Dhcp(new DhcpOptions(1), broadcast: true));
            Assert.True(DhcpOf(await second.ReceiveAsync(IsDhcpReply), out var address, out _));
            Assert.Equal(Leased, address);
        }
        await network.DisposeAsync();
        Assert.True(network.Stopped.IsCompletedSuccessfully);
        Assert.False(File.Exists(SocketPath));
        await network.DisposeAsync();
    }

    private static bool IsArp(byte[] frame, int operation) =>
        frame.Length >= 42 && frame[12] == 8 && frame[13] == 6 && BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(20)) == operation;

    private static bool IsDhcpReply(byte[] frame) => DhcpOf(frame, out _, out _);

    private static bool DhcpOf(byte[] frame, out IPAddress yourAddress, out DhcpMessageType? type)
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

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>QEMU's end of <c>-netdev stream</c>: length-prefixed frames over the unix socket.</summary>
    private sealed class FakeQemu(Socket socket) : IAsyncDisposable
    {
        private readonly NetworkStream _stream = new(socket, ownsSocket: true);

        public static async Task<FakeQemu> ConnectAsync(string path)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), TestContext.Current.CancellationToken);
            return new FakeQemu(socket);
        }

        public Task SendAsync(byte[] frame) => SendRawAsync([.. BigEndian((uint)frame.Length), .. frame]);

        public async Task SendRawAsync(byte[] bytes) => await _stream.WriteAsync(bytes, TestContext.Current.CancellationToken);

        /// <summary>The next frame for the guest that <paramref name="wanted"/> accepts; others are passed over.</summary>
        public async Task<byte[]> ReceiveAsync(Func<byte[], bool> wanted)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            timeout.CancelAfter(Patience);
            var prefix = new byte[4];
            while (true)
            {
                await _stream.ReadExactlyAsync(prefix, timeout.Token);
                var frame = new byte[BinaryPrimitives.ReadUInt32BigEndian(prefix)];
                await _stream.ReadExactlyAsync(frame, timeout.Token);
                if (wanted(frame))
                {
                    return frame;
                }
            }
        }

        public ValueTask DisposeAsync() => _stream.DisposeAsync();
    }
}
