using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Shared;
using Lkrun.Services.Network.Shared.Ports;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;
using Lkrun.Tests.Vpnkit;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network.Shared;

/// <summary>
/// The shared network's service in this process, with libslirp, and clients that play VMs through the independent
/// VPNKit client. No VM is involved.
/// </summary>
public sealed class SharedNetworkTests : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-shared-").FullName;
    private readonly ConcurrentQueue<string> _log = new();
    private readonly List<IAsyncDisposable> _clients = [];
    private SharedNetwork? _network;

    private string EthernetSocket => Path.Combine(_directory, "eth.sock");

    private string PortSocket => Path.Combine(_directory, "port.sock");

    private LeaseRegistry Registry => new(Path.Combine(_directory, "registry"));

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients)
        {
            await client.DisposeAsync();
        }
        if (_network is not null)
        {
            Assert.False(_network.Completion.IsFaulted, "the service stopped by itself");
            await _network.DisposeAsync();
        }
        Directory.Delete(_directory, recursive: true);
    }

    private SharedNetwork Start(TimeSpan? idleExit = null) =>
        _network = SharedNetwork.Start(new SharedNetworkOptions(EthernetSocket, PortSocket, Registry, idleExit, _log.Enqueue));

    private async Task<VpnkitTestClient> AttachAsync(Guid? uuid = null, IPAddress? preferred = null)
    {
        var client = await VpnkitTestClient.ConnectAsync(EthernetSocket, uuid ?? Guid.NewGuid(), preferred, TestContext.Current.CancellationToken);
        _clients.Add(client);
        return client;
    }

    private PortResponse Ports(PortRequest request)
    {
        using var client = PortControlClient.Connect(PortSocket);
        return client.Send(request);
    }

    private static MacAddress MacOf(VpnkitTestClient client) => MacAddress.FromBytes(client.Mac);

    [Fact]
    public async Task Vms_get_their_own_mac_and_address_and_keep_both_when_they_come_back()
    {
        Start();
        var uuid = Guid.NewGuid();
        IPAddress first;
        await using (var client = await VpnkitTestClient.ConnectAsync(EthernetSocket, uuid, cancellation: TestContext.Current.CancellationToken))
        {
            Assert.Equal((22u, NatSubnet.Mtu, 65535), (client.ServerVersion, client.Mtu, client.MaxPacketSize));
            Assert.Equal(SharedNetwork.MacFor(uuid), MacOf(client));
            Assert.False(MacOf(client).IsMulticast);
            Assert.True(MacOf(client).IsLocallyAdministered);
            first = await client.LeaseAsync(Patience);
            Assert.Equal(IPAddress.Parse("192.168.65.3"), first);

            var other = await AttachAsync();
            Assert.NotEqual(client.MacText, other.MacText);
            Assert.Equal(IPAddress.Parse("192.168.65.4"), await other.LeaseAsync(Patience));
        }
        await WaitForLogAsync("detached: its link closed");
        await using var again = await VpnkitTestClient.ConnectAsync(EthernetSocket, uuid, cancellation: TestContext.Current.CancellationToken);
        Assert.Equal(SharedNetwork.MacFor(uuid), MacOf(again));
        Assert.Equal(first, await again.LeaseAsync(Patience));
    }

    [Fact]
    public async Task A_preferred_address_is_granted_and_refused_to_another_vm_while_it_is_attached()
    {
        Start();
        var wanted = IPAddress.Parse("192.168.65.42");
        var uuid = Guid.NewGuid();
        var first = await AttachAsync(uuid, preferred: wanted);
        Assert.Equal(wanted, await first.LeaseAsync(Patience));
        var refusal = await Assert.ThrowsAsync<VpnkitRefusal>(() => AttachAsync(preferred: wanted));
        Assert.Equal("192.168.65.42 is in use by another running VM", refusal.Message);
        var gateway = await Assert.ThrowsAsync<VpnkitRefusal>(() => AttachAsync(preferred: NatSubnet.Gateway));
        Assert.Equal("192.168.65.1 cannot be a VM's address: 192.168.65.1 is the gateway", gateway.Message);
        var twice = await Assert.ThrowsAsync<VpnkitRefusal>(() => AttachAsync(uuid));
        Assert.Equal($"a VM with the same identity ({uuid}) is attached or running already", twice.Message);
    }

    [Fact]
    public async Task Broadcasts_reach_every_vm_and_unicast_only_its_own()
    {
        Start();
        var a = await AttachAsync();
        var b = await AttachAsync();
        var c = await AttachAsync();
        var addressA = await a.LeaseAsync(Patience);
        var addressB = await b.LeaseAsync(Patience);
        // A asks who has B's address: B and C hear it; B answers A alone.
        await a.SendFrameAsync(Arp(MacOf(a), MacAddress.Broadcast, 1, addressA, default, addressB), TestContext.Current.CancellationToken);
        Assert.Equal(addressB.GetAddressBytes(), (await b.ReceiveAsync(IsArpRequest, Patience))[38..42]);
        await c.ReceiveAsync(IsArpRequest, Patience);
        await b.SendFrameAsync(Arp(MacOf(b), MacOf(a), 2, addressB, MacOf(a), addressA), TestContext.Current.CancellationToken);
        var reply = await a.ReceiveAsync(frame => IsArp(frame, operation: 2) && frame[28..32].SequenceEqual(addressB.GetAddressBytes()), Patience);
        Assert.Equal(b.Mac, reply[22..28]);
        // A unicast frame for B reaches B; C sees only what is flooded: a marker broadcast sent after it.
        var toB = Ethernet(MacOf(a), MacOf(b), 0x88b5, Encoding.ASCII.GetBytes("for b only"));
        var marker = Ethernet(MacOf(a), MacAddress.Broadcast, 0x88b5, Encoding.ASCII.GetBytes("marker"));
        await a.SendFrameAsync(toB, TestContext.Current.CancellationToken);
        await a.SendFrameAsync(marker, TestContext.Current.CancellationToken);
        Assert.Equal(toB, await b.ReceiveAsync(frame => frame[12] == 0x88, Patience));
        Assert.Equal(marker, await c.ReceiveAsync(frame => frame[12] == 0x88, Patience));
    }

    [Fact]
    public async Task The_gateway_and_the_dns_server_answer_every_vm()
    {
        Start();
        foreach (var client in new[] { await AttachAsync(), await AttachAsync() })
        {
            var address = await client.LeaseAsync(Patience);
            foreach (var (target, mac) in new[] { (NatSubnet.Gateway, SlirpStack.GatewayMac), (NatSubnet.Dns, GatewayPort.DnsMac) })
            {
                await client.SendFrameAsync(Arp(MacOf(client), MacAddress.Broadcast, 1, address, default, target), TestContext.Current.CancellationToken);
                var reply = await client.ReceiveAsync(frame => IsArp(frame, operation: 2) && frame[28..32].SequenceEqual(target.GetAddressBytes()), Patience);
                Assert.Equal(Mac(mac), reply[22..28]);
                Assert.Equal(client.Mac, reply[..6]);
            }
        }
    }

    [Fact]
    public async Task Ports_are_published_for_attached_vms_and_go_with_their_link()
    {
        Start();
        var vm = await AttachAsync();
        var address = await vm.LeaseAsync(Patience);
        var hostPort = FreePort();
        var port = new PublishedPort(IPAddress.Loopback, hostPort, 80, PortProtocol.Tcp);
        Assert.Equal("no VM is attached at 192.168.65.77", Ports(new ExposeRequest(port, IPAddress.Parse("192.168.65.77"))).Error);
        Assert.Null(Ports(new ExposeRequest(port, address)).Error);
        Assert.Equal($"tcp port 127.0.0.1:{hostPort} is published already (tcp 127.0.0.1:{hostPort} -> {address}:80)", Ports(new ExposeRequest(port, address)).Error);
        Assert.Equal([new ExposedPort(port, address)], Ports(new ListRequest()).Ports);
        Assert.True(Listening(hostPort));

        Assert.Null(Ports(new UnexposeRequest(PortProtocol.Tcp, IPAddress.Loopback, hostPort)).Error);
        Assert.False(Listening(hostPort));
        Assert.Equal($"tcp port 127.0.0.1:{hostPort} is not published", Ports(new UnexposeRequest(PortProtocol.Tcp, IPAddress.Loopback, hostPort)).Error);

        Assert.Null(Ports(new ExposeRequest(port, address)).Error);
        using (var taken = new TcpListener(IPAddress.Loopback, 0))
        {
            taken.Start();
            var takenPort = ((IPEndPoint)taken.LocalEndpoint).Port;
            Assert.Equal(
                $"tcp port 127.0.0.1:{takenPort} is already in use on this host",
                Ports(new ExposeRequest(port with { HostPort = takenPort }, address)).Error);
        }
        _clients.Remove(vm);
        await vm.DisposeAsync();
        await WaitForLogAsync($"unpublished tcp 127.0.0.1:{hostPort} -> {address}:80: VM");
        Assert.Empty(Ports(new ListRequest()).Ports!);
        Assert.False(Listening(hostPort));
    }

    [Fact]
    public async Task Hostile_clients_on_either_socket_are_closed_and_the_service_serves_on()
    {
        Start();
        var vm = await AttachAsync();
        var address = await vm.LeaseAsync(Patience);
        var cancellation = TestContext.Current.CancellationToken;

        // Ethernet socket: garbage, a truncated init, another version, a bad command, a truncated command.
        byte[][] openings =
        [
            Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + new string('x', 40)),
            VpnkitTestClient.InitMessage()[..20],
            VpnkitTestClient.InitMessage(version: 1),
            [.. VpnkitTestClient.InitMessage(), 6, .. new byte[40]],
            [.. VpnkitTestClient.InitMessage(), .. VpnkitTestClient.CommandMessage(Guid.NewGuid())[..30]],
        ];
        foreach (var opening in openings)
        {
            using var socket = await VpnkitTestClient.ConnectRawAsync(EthernetSocket, cancellation);
            await socket.SendAsync(opening, cancellation);
            socket.Shutdown(SocketShutdown.Send);
            var buffer = new byte[512];
            while (await socket.ReceiveAsync(buffer, cancellation) > 0)
            {
            }
        }
        // An attached client that breaks the framing: lengths too short for Ethernet, a length with too few bytes.
        var rogue = await AttachAsync();
        await rogue.SendRawAsync([0, 0, 5, 0, 1, 2, 3, 4, 5, 13, 0, .. new byte[13]], cancellation);
        await rogue.SendRawAsync([0xff, 0xff, 1, 2, 3], cancellation);
        await rogue.DisposeAsync();
        _clients.Remove(rogue);

        // Port socket: not JSON and a line too long are answered with an error; a request cut short gets no answer.
        (byte[] Bytes, bool Answered)[] requests =
        [
            ("hello\n"u8.ToArray(), true),
            (Encoding.ASCII.GetBytes(new string('{', 5000)), true),
            ("""{"request":"li"""u8.ToArray(), false),
        ];
        foreach (var (bytes, answered) in requests)
        {
            using var socket = await VpnkitTestClient.ConnectRawAsync(PortSocket, cancellation);
            await socket.SendAsync(bytes, cancellation);
            socket.Shutdown(SocketShutdown.Send);
            var answer = new MemoryStream();
            var buffer = new byte[512];
            int read;
            while ((read = await socket.ReceiveAsync(buffer, cancellation)) > 0)
            {
                answer.Write(buffer, 0, read);
            }
            var text = Encoding.UTF8.GetString(answer.ToArray());
            if (answered)
            {
                Assert.StartsWith("""{"ok":false,"error":""", text);
            }
            else
            {
                Assert.Empty(text);
            }
        }

        await WaitForLogAsync("port client");
        Assert.Contains(_log, line => line.Contains("not VPNKit's ethernet protocol"));
        Assert.Contains(_log, line => line.Contains("speaks version 1 of VPNKit's protocol"));
        Assert.Contains(_log, line => line.Contains("command 6 (bind_ipv4) is not supported"));
        Assert.Contains(_log, line => line.Contains("closed the connection in the middle of a handshake message"));
        Assert.Single(_log, line => line.Contains("shorter than an Ethernet header"));
        Assert.Contains(_log, line => line.Contains("a request longer than 4096 bytes"));

        // The service and its VM carry on.
        Assert.False(_network!.Completion.IsCompleted);
        Assert.Equal(address, await vm.LeaseAsync(Patience));
        Assert.Equal(IPAddress.Parse("192.168.65.4"), await (await AttachAsync()).LeaseAsync(Patience));
        Assert.Empty(Ports(new ListRequest()).Ports!);
    }

    [Fact]
    public async Task The_sockets_are_the_owners_alone_and_gone_once_the_service_stops_which_closes_every_link()
    {
        var network = Start();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(EthernetSocket));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(PortSocket));
        var vm = await AttachAsync();
        await vm.LeaseAsync(Patience);
        var error = Assert.Throws<NetworkException>(() => SharedNetwork.Start(new SharedNetworkOptions(EthernetSocket, PortSocket, Registry, null, _log.Enqueue)));
        Assert.Equal($"{EthernetSocket}: a network service is running there already", error.Message);

        await network.DisposeAsync();
        Assert.True(network.Completion.IsCompletedSuccessfully);
        Assert.False(File.Exists(EthernetSocket));
        Assert.False(File.Exists(PortSocket));
        using var cancellation = new CancellationTokenSource(Patience);
        while (await vm.ReceiveFrameAsync(cancellation.Token) is not null)
        {
        }
        Assert.Contains(_log, line => line.EndsWith("detached: the service stopped"));
    }

    [Fact]
    public async Task A_private_instance_stops_by_itself_once_no_vm_has_been_attached_for_its_idle_time()
    {
        var network = Start(idleExit: TimeSpan.FromMilliseconds(300));
        var vm = await AttachAsync();
        await Task.Delay(600, TestContext.Current.CancellationToken);
        Assert.False(network.Completion.IsCompleted);
        _clients.Remove(vm);
        await vm.DisposeAsync();
        await network.Completion.WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.False(File.Exists(EthernetSocket));
        Assert.Contains(_log, line => line == "no VM has been attached for 0.3 s; stopping");
    }

    private async Task WaitForLogAsync(string text)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!_log.Any(line => line.Contains(text)))
        {
            Assert.True(DateTime.UtcNow < deadline, $"no log line with '{text}': {string.Join(" | ", _log)}");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    private static bool Listening(int port)
    {
        using var client = new TcpClient();
        try
        {
            client.Connect(IPAddress.Loopback, port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static bool IsArp(byte[] frame, int operation) => frame.Length >= 42 && frame[12] == 8 && frame[13] == 6 && frame[21] == operation;

    private static bool IsArpRequest(byte[] frame) => IsArp(frame, operation: 1);

    private static byte[] Arp(MacAddress from, MacAddress to, byte operation, IPAddress sender, MacAddress targetMac, IPAddress target) =>
        Ethernet(from, to, 0x0806,
        [
            0, 1, 8, 0, 6, 4, 0, operation, .. Mac(from), .. sender.GetAddressBytes(), .. Mac(targetMac), .. target.GetAddressBytes(),
        ]);
}
