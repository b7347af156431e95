using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Lkrun.Integration.Tests.Infrastructure;
using Lkrun.Tests.Vpnkit;

namespace Lkrun.Integration.Tests.Network;

/// <summary>
/// Shared networks through the real binary: <c>lkrun network serve</c> and VMs that attach to it with
/// <c>-networking vpnkit,ETH,PORT</c> (or start their own with <c>-networking vpnkit</c>). Several VMs run at once,
/// so the class runs alone in the network collection. Each test's lease registry is its own (XDG_STATE_HOME in its
/// scratch dir), shared by the service and the VMs, so a fresh network starts at .3.
/// </summary>
[Collection(nameof(NetworkTests))]
public sealed class SharedNetworkTests : IAsyncDisposable
{
    private const string NetLine = @"lkrun-guest: net eth0 (?<address>[\d.]+)/24 gw 192\.168\.65\.1 dns 192\.168\.65\.254\r?$";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private readonly Scratch _scratch = new();
    private readonly List<LkrunProcess> _processes = [];
    private readonly List<LkrunProcess> _withoutStateDir = [];

    private string Ethernet => _scratch["eth.sock"];

    private string Ports => _scratch["port.sock"];

    private string Attach => $"vpnkit,{Ethernet},{Ports}";

    public async ValueTask DisposeAsync()
    {
        // The service and the CLI commands have no lkrun.pid to be killed by; what a test left running goes now.
        foreach (var process in _withoutStateDir)
        {
            try
            {
                Posix.Signal(process.ProcessId, Posix.SIGKILL);
            }
            catch (Exception)
            {
                // It has exited already.
            }
            await process.WaitForExitAsync();
        }
        foreach (var process in _processes)
        {
            await process.DisposeAsync();
        }
        _scratch.Dispose();
    }

    /// <summary>The test guest, powering off once it is ready.</summary>
    private string PoweringOff => _poweringOff ??= _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff", "off");

    private string? _poweringOff;

    private LkrunProcess Run(string state, string image, params string[] flags) =>
        Track(LkrunProcess.Run(_scratch[state], ["-mem", "256", .. flags], image));

    private LkrunProcess Lkrun(params string[] args) => TrackWithoutStateDir(LkrunProcess.Start(args, _scratch["cli"]));

    private LkrunProcess TrackWithoutStateDir(LkrunProcess process)
    {
        _withoutStateDir.Add(process);
        return Track(process);
    }

    private LkrunProcess Track(LkrunProcess process)
    {
        _processes.Add(process);
        return process;
    }

    /// <summary><c>lkrun network serve</c> on this test's sockets, once it serves.</summary>
    private async Task<LkrunProcess> ServeAsync()
    {
        var service = Lkrun("network", "serve", "--eth", Ethernet, "--port", Ports);
        await service.WaitForErrorAsync("^lkrun: serving the shared network on ", Patience);
        return service;
    }

    private static async Task<string> AddressOfAsync(LkrunProcess lkrun)
    {
        var address = (await lkrun.WaitForOutputAsync(NetLine)).Groups["address"].Value;
        await lkrun.WaitForErrorAsync($"^lkrun: guest address {Regex.Escape(address)}$");
        Assert.Equal(address + "\n", File.ReadAllText(Path.Combine(lkrun.StateDirectory, "ip")));
        return address;
    }

    /// <summary>Runs one lkrun command to its end: its exit code and stdout, and stderr's lines.</summary>
    private async Task<(int Code, string Output, string Error)> CommandAsync(params string[] args)
    {
        var command = Lkrun(args);
        var code = await command.WaitForExitAsync(Patience);
        return (code, command.Output, command.Error);
    }

    [Fact]
    public async Task Vms_on_one_network_get_their_own_addresses_reach_each_other_and_are_detached_when_the_service_stops()
    {
        var service = await ServeAsync();
        var ssh = await GuestSsh.CreateKeyAsync(_scratch["id_ed25519"]);
        // Each guest authorizes the key and serves a megabyte of random bytes for the other to fetch.
        var userData = ssh.AuthorizingUserData + "head -c 1048576 /dev/urandom > /www/blob\n";
        var sshA = LoopbackPorts.Free();
        var sshB = LoopbackPorts.Free();
        var a = Run("a", TestImages.Guest, "-networking", Attach, "-publish", $"{sshA}:22", "-data", userData);
        var b = Run("b", TestImages.Guest, "-networking", Attach, "-publish", $"{sshB}:22", "-data", userData);
        var addressA = await AddressOfAsync(a);
        var addressB = await AddressOfAsync(b);
        Assert.NotEqual(addressA, addressB);
        Assert.All([addressA, addressB], address => Assert.Matches(@"^192\.168\.65\.\d+$", address));
        await a.WaitForOutputAsync("lkrun-guest: user-data exit 0");
        await b.WaitForOutputAsync("lkrun-guest: user-data exit 0");

        // Each reaches the other: ping, then a TCP transfer whose content is checked against the sender's file.
        var fromA = await ssh.RunAsync(sshA, $"ping -c 2 -W 10 {addressB} > /dev/null && echo ping-ok; wget -q -O - http://{addressB}/blob | sha256sum");
        var fromB = await ssh.RunAsync(sshB, $"ping -c 2 -W 10 {addressA} > /dev/null && echo ping-ok; wget -q -O - http://{addressA}/blob | sha256sum");
        var blobA = await ssh.RunAsync(sshA, "sha256sum < /www/blob");
        var blobB = await ssh.RunAsync(sshB, "sha256sum < /www/blob");
        Assert.NotEqual(blobA, blobB);
        Assert.Equal("ping-ok\n" + blobB, fromA);
        Assert.Equal("ping-ok\n" + blobA, fromB);

        // A third VM asks for a fixed address and gets it.
        var c = Run("c", PoweringOff, "-networking", Attach, "-ip", "192.168.65.42");
        Assert.Equal("192.168.65.42", await AddressOfAsync(c));
        Assert.Equal(0, await c.WaitForExitAsync());

        // The service stops on SIGTERM, and both VMs' lkruns say they lost their network.
        Posix.Signal(service.ProcessId, Posix.SIGTERM);
        Assert.Equal(0, await service.WaitForExitAsync(Patience));
        Assert.EndsWith("lkrun: stopped\n", service.Error);
        Assert.False(File.Exists(Ethernet));
        Assert.False(File.Exists(Ports));
        foreach (var vm in new[] { a, b })
        {
            await vm.WaitForErrorAsync($"^lkrun: the shared network at {Regex.Escape(Ethernet)} .*: the VM is detached and has no network now$", Patience);
            await vm.SignalAsync(Posix.SIGTERM);
            Assert.Equal(0, await vm.WaitForExitAsync());
        }
    }

    [Fact]
    public async Task The_independent_test_client_attaches_over_vpnkits_protocol_and_gets_a_lease()
    {
        var service = await ServeAsync();
        var cancellation = TestContext.Current.CancellationToken;
        await using var client = await VpnkitTestClient.ConnectAsync(Ethernet, Guid.NewGuid(), cancellation: cancellation);
        Assert.Equal(22u, client.ServerVersion);
        Assert.Equal(65520, client.Mtu);
        Assert.Equal(IPAddress.Parse("192.168.65.3"), await client.LeaseAsync(Patience));
        await using var preferring = await VpnkitTestClient.ConnectAsync(Ethernet, Guid.NewGuid(), IPAddress.Parse("192.168.65.77"), cancellation);
        Assert.Equal(IPAddress.Parse("192.168.65.77"), await preferring.LeaseAsync(Patience));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Ethernet));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Ports));

        Posix.Signal(service.ProcessId, Posix.SIGTERM);
        Assert.Equal(0, await service.WaitForExitAsync(Patience));
        // Frames already on their way come first, then the end of the connection.
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        patience.CancelAfter(Patience);
        while (await client.ReceiveFrameAsync(patience.Token) is not null)
        {
        }
    }

    [Fact]
    public async Task Published_ports_serve_the_guest_go_with_unpublish_and_with_their_vm_and_hostile_clients_change_nothing()
    {
        var service = await ServeAsync();
        var atStart = LoopbackPorts.Free();
        var atRunTime = LoopbackPorts.Free();
        var a = Run("a", TestImages.Guest, "-networking", Attach, "-publish", $"{atStart}:80");
        var address = await AddressOfAsync(a);
        await a.WaitForReadyAsync();
        Assert.Equal("lkrun-guest http ok\n", await GetAsync(atStart));

        // Published at run time, listed, unpublished.
        Assert.Equal((0, "", ""), await CommandAsync("network", "publish", "--port", Ports, "--ip", address, $"{atRunTime}:80"));
        Assert.Equal("lkrun-guest http ok\n", await GetAsync(atRunTime));
        var list = await CommandAsync("network", "ls", "--port", Ports);
        Assert.Equal(0, list.Code);
        Assert.Equal(2, list.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Contains($"127.0.0.1:{atRunTime}", list.Output);
        Assert.Equal((0, "", ""), await CommandAsync("network", "unpublish", "--port", Ports, $"{atRunTime}"));
        Assert.False(Listening(atRunTime));

        // A host port in use is refused with one line.
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var takenPort = ((IPEndPoint)taken.LocalEndpoint).Port;
        var refused = await CommandAsync("network", "publish", "--port", Ports, "--ip", address, $"{takenPort}:80");
        Assert.Equal(1, refused.Code);
        Assert.Matches($"^lkrun: .*{takenPort}.*in use[^\n]*\n$", refused.Error);

        // Garbage and cut-short messages on both sockets: the service drops those clients and serves on.
        var cancellation = TestContext.Current.CancellationToken;
        byte[][] hostile =
        [
            Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\n\r\n" + new string('x', 300)),
            VpnkitTestClient.InitMessage()[..17],
            [.. VpnkitTestClient.InitMessage(), .. VpnkitTestClient.CommandMessage(Guid.NewGuid())[..11]],
            [.. VpnkitTestClient.InitMessage(), 9, .. new byte[40]],
        ];
        foreach (var bytes in hostile)
        {
            await SendAndCloseAsync(Ethernet, bytes, cancellation);
        }
        await using (var rogue = await VpnkitTestClient.ConnectAsync(Ethernet, Guid.NewGuid(), cancellation: cancellation))
        {
            await rogue.SendRawAsync([3, 0, 1, 2, 3, 0xff, 0xff, 1, 2], cancellation);
        }
        foreach (var bytes in new[] { "not json\n"u8.ToArray(), Encoding.ASCII.GetBytes(new string('[', 10000)), """{"request":"exp"""u8.ToArray() })
        {
            await SendAndCloseAsync(Ports, bytes, cancellation);
        }
        Assert.Equal("lkrun-guest http ok\n", await GetAsync(atStart));
        Assert.Equal((0, "", ""), await CommandAsync("network", "publish", "--port", Ports, "--ip", address, $"{atRunTime}:80"));
        Assert.Equal("lkrun-guest http ok\n", await GetAsync(atRunTime));
        await using (var client = await VpnkitTestClient.ConnectAsync(Ethernet, Guid.NewGuid(), cancellation: cancellation))
        {
            Assert.NotEqual(IPAddress.Parse(address), await client.LeaseAsync(Patience));
        }
        Assert.Contains("not VPNKit's ethernet protocol", service.Error);
        Assert.Contains("not valid JSON", service.Error);

        // A VM's lkrun killed outright: the service notices its link closing and removes both of its ports.
        Posix.Signal(await a.LkrunPidAsync(), Posix.SIGKILL);
        await a.WaitForExitAsync();
        await LkrunProcess.WaitUntilAsync(() => !Listening(atStart) && !Listening(atRunTime), Patience, "the killed VM's ports to close");
        Assert.Equal((0, "", ""), await CommandAsync("network", "ls", "--port", Ports));

        // A VM that powers off takes its port with it too.
        var onExit = LoopbackPorts.Free();
        var b = Run("b", PoweringOff, "-networking", Attach, "-publish", $"{onExit}:80");
        await AddressOfAsync(b);
        Assert.Equal(0, await b.WaitForExitAsync());
        await LkrunProcess.WaitUntilAsync(() => !Listening(onExit), Patience, "the powered-off VM's port to close");
        Assert.Equal((0, "", ""), await CommandAsync("network", "ls", "--port", Ports));
        Assert.Contains($"unpublished tcp 127.0.0.1:{onExit}", service.Error);

        Posix.Signal(service.ProcessId, Posix.SIGTERM);
        Assert.Equal(0, await service.WaitForExitAsync(Patience));
    }

    /// <summary>
    /// The service runs in a user, mount, network and PID namespace of the test's own (all in it ends with it), whose loopback has a DNS server
    /// (the namespace's resolv.conf names it) and a web server: the guest resolves a name through .254 and fetches a
    /// page from the host's loopback through .1, and no query leaves the machine.
    /// </summary>
    [Fact]
    public async Task The_guest_resolves_names_through_254_and_reaches_the_hosts_loopback_through_1()
    {
        File.WriteAllText(_scratch["resolv.conf"], "nameserver 127.0.0.1\n");
        Directory.CreateDirectory(_scratch["www"]);
        File.WriteAllText(_scratch["www/page"], "served on the host's loopback\n");
        File.WriteAllText(_scratch["dns.py"], DnsResponder);
        const int WebPort = 8089;
        var namespaced = string.Join(" && ",
            "ip link set lo up",
            $"mount --bind {_scratch["resolv.conf"]} /etc/resolv.conf",
            $"(python3 {_scratch["dns.py"]} &)",
            $"(busybox httpd -f -p 127.0.0.1:{WebPort} -h {_scratch["www"]} &)",
            "exec " + LkrunProcess.LkrunCommand(["network", "serve", "--eth", Ethernet, "--port", Ports]));
        var service = TrackWithoutStateDir(LkrunProcess.StartInShell($"exec unshare --user --map-root-user --mount --net --pid --fork --kill-child sh -c '{namespaced}'", _scratch["cli"]));
        await service.WaitForErrorAsync("^lkrun: serving the shared network on ", Patience);

        var userData = $"#!/bin/sh\nnslookup lkrun-test.example 192.168.65.254 | grep -A1 'lkrun-test.example' | tail -1\nwget -q -O - http://192.168.65.1:{WebPort}/page\n";
        var lkrun = Run("a", TestImages.Guest, "-networking", Attach, "-data", userData);
        await AddressOfAsync(lkrun);
        await lkrun.WaitForOutputAsync("lkrun-guest: user-data exit 0");
        Assert.Matches(@"Address:? *(1: )?192\.0\.2\.55", lkrun.Output);
        Assert.Contains("served on the host's loopback\n", lkrun.Output);

        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
    }

    [Fact]
    public async Task A_vm_of_its_own_network_starts_it_in_its_state_dir_and_the_network_goes_with_the_vm()
    {
        var http = LoopbackPorts.Free();
        var lkrun = Run("a", TestImages.Guest, "-networking", "vpnkit", "-publish", $"{http}:80");
        Assert.Equal("192.168.65.3", await AddressOfAsync(lkrun));
        await lkrun.WaitForReadyAsync();
        Assert.Equal("lkrun-guest http ok\n", await GetAsync(http));
        var ethernet = _scratch["a/vpnkit_eth.sock"];
        var ports = _scratch["a/vpnkit_port.sock"];
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ethernet));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ports));
        var list = await CommandAsync("network", "ls", "--port", ports);
        Assert.Equal((0, ""), (list.Code, list.Error));
        Assert.Contains($"127.0.0.1:{http}", list.Output);

        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        // The network waits a little for another VM, then stops and removes its sockets.
        await LkrunProcess.WaitUntilAsync(() => !File.Exists(ethernet) && !File.Exists(ports), Patience, "the VM's own network to stop");
        Assert.False(Listening(http));
    }

    /// <summary>
    /// Docker Desktop's sockets are found where it keeps them on macOS, under the user's home: a service of lkrun's
    /// own stands in for Docker's VPNKit there, under each generation of the sockets' names. The VM joins that
    /// network: its address comes from the service's DHCP server, which leases the next one to the test client
    /// attaching after it. <c>-publish</c> is refused, since Docker Desktop's port socket speaks VPNKit's 9P protocol.
    /// </summary>
    [Theory]
    [InlineData("vpnkit.eth.sock", "vpnkit.port.sock")]
    [InlineData("s50", "s51")]
    public async Task Docker_for_mac_attaches_to_the_sockets_in_the_users_docker_desktop_data_dir(string ethernetName, string portName)
    {
        var home = _scratch["home"];
        var data = Directory.CreateDirectory(Path.Combine(home, "Library", "Containers", "com.docker.docker", "Data")).FullName;
        var ethernet = Path.Combine(data, ethernetName);
        var service = Lkrun("network", "serve", "--eth", ethernet, "--port", Path.Combine(data, portName));
        await service.WaitForErrorAsync("^lkrun: serving the shared network on ", Patience);
        var withHome = new Dictionary<string, string> { ["HOME"] = home };

        await AssertRefusedAsync(
            ["-networking", "docker-for-mac", "-publish", "8080:80"],
            "-publish 127.0.0.1:8080:80/tcp: not available with -networking docker-for-mac (Docker Desktop's port socket speaks VPNKit's 9P protocol, which lkrun does not)",
            withHome);

        var lkrun = Track(LkrunProcess.Run(_scratch["a"], ["-mem", "256", "-networking", "docker-for-mac"], TestImages.Guest, environment: withHome));
        var address = await AddressOfAsync(lkrun);
        Assert.Equal("192.168.65.3", address);
        await lkrun.WaitForReadyAsync();
        var cancellation = TestContext.Current.CancellationToken;
        await using (var client = await VpnkitTestClient.ConnectAsync(ethernet, Guid.NewGuid(), cancellation: cancellation))
        {
            Assert.Equal(IPAddress.Parse("192.168.65.4"), await client.LeaseAsync(Patience));
        }

        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
    }

    [Fact]
    public async Task Shared_network_errors_are_one_line_exit_2_and_create_nothing()
    {
        var home = _scratch["home"];
        Directory.CreateDirectory(home);
        var data = Path.Combine(home, "Library", "Containers", "com.docker.docker", "Data");
        var missing = _scratch["missing.sock"];
        await AssertRefusedAsync(["-networking", $"vpnkit,{missing}"], $"-networking vpnkit,{missing}: no such socket");
        await AssertRefusedAsync(
            ["-networking", $"vpnkit,{missing}", "-publish", "8080:80"],
            $"-publish 127.0.0.1:8080:80/tcp: publishing needs the network's port socket: -networking vpnkit,{missing},PORT");
        await AssertRefusedAsync(
            ["-networking", "docker-for-mac"],
            $"-networking docker-for-mac: Docker Desktop's network socket is not there (looked at {data}/vpnkit.eth.sock and {data}/s50); start Docker Desktop or use another -networking",
            new Dictionary<string, string> { ["HOME"] = home });

        var serve = await CommandAsync("network", "serve", "--eth", Ethernet);
        Assert.Equal((2, "lkrun: missing --port; see 'lkrun network serve --help'\n"), (serve.Code, serve.Error));
        var publish = await CommandAsync("network", "publish", "--port", Ports, "--ip", "192.168.65.3", "8080");
        Assert.Equal(2, publish.Code);
        Assert.StartsWith("lkrun: publish 8080: expected", publish.Error);
        var list = await CommandAsync("network", "ls", "--port", missing);
        Assert.Equal(1, list.Code);
        Assert.Matches($"^lkrun: cannot connect to the network's port socket {Regex.Escape(missing)}: [^\n]*\n$", list.Error);
    }

    private async Task AssertRefusedAsync(string[] flags, string message, IDictionary<string, string>? environment = null)
    {
        var state = _scratch["state"];
        var before = Directory.GetFileSystemEntries(_scratch.Path).Order().ToList();
        await using var lkrun = LkrunProcess.Run(state, ["-accel", "tcg", .. flags], TestImages.Guest, environment: environment);
        Assert.Equal(2, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        await lkrun.WaitForErrorAsync(Regex.Escape(message) + "\n");
        Assert.Equal($"lkrun: {message}\n", lkrun.Error);
        Assert.Equal(before, Directory.GetFileSystemEntries(_scratch.Path).Order().ToList());
    }

    private static async Task SendAndCloseAsync(string path, byte[] bytes, CancellationToken cancellation)
    {
        using var socket = await VpnkitTestClient.ConnectRawAsync(path, cancellation);
        await socket.SendAsync(bytes, cancellation);
        socket.Shutdown(SocketShutdown.Send);
        var buffer = new byte[1024];
        while (await socket.ReceiveAsync(buffer, cancellation) > 0)
        {
        }
    }

    private static async Task<string> GetAsync(int port)
    {
        using var client = new HttpClient { Timeout = Patience };
        return await client.GetStringAsync($"http://127.0.0.1:{port}/", TestContext.Current.CancellationToken);
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

    /// <summary>A DNS server on the namespace's 127.0.0.1:53 that answers every A question with 192.0.2.55 (TEST-NET-1).</summary>
    private const string DnsResponder = """
        import socket
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 53))
        while True:
            query, peer = server.recvfrom(512)
            end = 12
            while query[end] != 0:
                end += query[end] + 1
            question = query[12:end + 5]
            qtype = question[-4:-2]
            answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, 55]) if qtype == b"\x00\x01" else b""
            flags = b"\x81\x80"
            header = query[:2] + flags + b"\x00\x01" + (b"\x00\x01" if answer else b"\x00\x00") + b"\x00\x00\x00\x00"
            server.sendto(header + question + answer, peer)

        """;
}
