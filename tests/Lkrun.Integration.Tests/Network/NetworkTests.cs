using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Network;

[CollectionDefinition(nameof(NetworkTests), DisableParallelization = true)]
public sealed class NetworkCollection;

/// <summary>The whole set below over QEMU's <c>-netdev stream</c> link.</summary>
[Collection(nameof(NetworkTests))]
public sealed class NetworkOverStreamTests : NetworkTests
{
    protected override string Link => "stream";
}

/// <summary>The whole set below over QEMU's <c>-netdev dgram</c> link.</summary>
[Collection(nameof(NetworkTests))]
public sealed class NetworkOverDatagramTests : NetworkTests
{
    protected override string Link => "datagram";
}

/// <summary>
/// The NAT network through the real binary, over the link <see cref="Link"/> names (one derived class per link).
/// Some tests run two VMs at once, so the collection runs alone. Each test's lease registry is its own
/// (XDG_STATE_HOME in its scratch dir), so a fresh registry starts at .3.
/// </summary>
public abstract class NetworkTests : IDisposable
{
    private const string NetLine = @"lkrun-guest: net eth0 (?<address>[\d.]+)/24 gw 192\.168\.65\.1 dns 192\.168\.65\.254\r?$";

    private readonly Scratch _scratch = new();

    /// <summary>The value of <c>LKRUN_QEMU_NET_LINK</c> for every lkrun these tests start.</summary>
    protected abstract string Link { get; }

    public void Dispose() => _scratch.Dispose();

    /// <summary>The test guest, powering off once it is ready.</summary>
    private string PoweringOff => _poweringOff ??= _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff", "off");

    private string? _poweringOff;

    private LkrunProcess Run(string state, string image, params string[] flags) =>
        LkrunProcess.Run(_scratch[state], ["-mem", "256", .. flags], image, environment: QemuLink.Environment(Link));

    private async Task<string> AddressOfAsync(LkrunProcess lkrun)
    {
        var address = (await lkrun.WaitForOutputAsync(NetLine)).Groups["address"].Value;
        await lkrun.WaitForErrorAsync($"^lkrun: guest address {Regex.Escape(address)}$");
        Assert.Equal(address + "\n", File.ReadAllText(Path.Combine(lkrun.StateDirectory, "ip")));
        return address;
    }

    [Fact]
    public async Task Addresses_start_at_3_stay_with_their_state_dir_and_differ_between_running_vms()
    {
        await using (var first = Run("a", TestImages.Guest))
        {
            Assert.Equal("192.168.65.3", await AddressOfAsync(first));
            await first.WaitForReadyAsync();

            await using (var second = Run("b", PoweringOff))
            {
                Assert.Equal("192.168.65.4", await AddressOfAsync(second));
                Assert.Equal(0, await second.WaitForExitAsync());
            }

            await first.SignalAsync(Posix.SIGTERM);
            Assert.Equal(0, await first.WaitForExitAsync());
        }

        await using var again = Run("a", PoweringOff);
        Assert.Equal("192.168.65.3", await AddressOfAsync(again));
        Assert.Equal(0, await again.WaitForExitAsync());
        // The MAC is kept in the state dir and stays the same across runs too.
        Assert.Matches("^([0-9a-f]{2}:){5}[0-9a-f]{2}\n$", File.ReadAllText(_scratch["a/mac"]));
    }

    [Fact]
    public async Task A_fixed_address_is_honoured_and_refused_to_a_second_vm_while_it_runs()
    {
        await using var first = Run("a", TestImages.Guest, "-ip", "192.168.65.42");
        Assert.Equal("192.168.65.42", await AddressOfAsync(first));
        await first.WaitForReadyAsync();

        await using (var second = Run("b", PoweringOff, "-accel", "tcg", "-ip", "192.168.65.42"))
        {
            Assert.Equal(2, await second.WaitForExitAsync(TimeSpan.FromSeconds(20)));
            await second.WaitForErrorAsync("\n");
            Assert.Equal($"lkrun: -ip 192.168.65.42: in use by the running VM of {_scratch["a"]}\n", second.Error);
            Assert.False(Directory.Exists(_scratch["b"]));
        }

        await first.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await first.WaitForExitAsync());
    }

    [Fact]
    public async Task Published_ports_reach_the_guest_over_tcp_udp_and_ssh_and_the_guest_reaches_the_hosts_loopback()
    {
        var http = LoopbackPorts.Free(SocketType.Stream);
        var udp = LoopbackPorts.Free(SocketType.Dgram);
        var sshPort = LoopbackPorts.Free(SocketType.Stream);
        var ssh = await GuestSsh.CreateKeyAsync(_scratch["id_ed25519"]);

        using var hostServer = new TcpListener(IPAddress.Loopback, 0);
        hostServer.Start();
        var hostPort = ((IPEndPoint)hostServer.LocalEndpoint).Port;
        var served = ServeOnePageAsync(hostServer, "served by the host\n");

        await using var lkrun = Run("a", TestImages.Guest,
            "-publish", $"{http}:80/tcp", "-publish", $"{udp}:7/udp", "-publish", $"{sshPort}:22", "-data", ssh.AuthorizingUserData);
        await lkrun.WaitForReadyAsync();
        await QemuLink.AssertInUseAsync(lkrun, Link);

        using (var client = new HttpClient())
        {
            Assert.Equal("lkrun-guest http ok\n", await client.GetStringAsync($"http://127.0.0.1:{http}/", TestContext.Current.CancellationToken));
        }

        Assert.Equal("ping through udp", await UdpRoundTripAsync(udp, "ping through udp"));

        await lkrun.WaitForOutputAsync("lkrun-guest: user-data exit 0");
        // The spec's example: ssh -p 2222 root@localhost.
        var output = await ssh.RunAsync(sshPort, $"echo in-guest-$((6*7)); wget -q -O - http://192.168.65.1:{hostPort}/", host: "localhost");
        Assert.Equal("in-guest-42\nserved by the host\n", output);
        await served;

        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
    }

    [Fact]
    public async Task Without_a_network_the_guest_has_no_interface()
    {
        await using var lkrun = Run("a", PoweringOff, "-networking", "none");
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: net none", lkrun.Output);
        Assert.DoesNotContain("guest address", lkrun.Error);
        Assert.False(File.Exists(_scratch["a/ip"]));
        Assert.False(File.Exists(_scratch["a/mac"]));
    }

    public static TheoryData<string[], string> UsageErrors => new()
    {
        { ["-networking", "vpnkit"], "-networking vpnkit: not available with the qemu backend; use default, vmnet or none" },
        { ["-networking", "docker-for-mac"], "-networking docker-for-mac: not available with the qemu backend; use default, vmnet or none" },
        { ["-ip", "192.168.65.0"], "-ip 192.168.65.0: 192.168.65.0 is the network address" },
        { ["-ip", "192.168.65.1"], "-ip 192.168.65.1: 192.168.65.1 is the gateway" },
        { ["-ip", "192.168.65.2"], "-ip 192.168.65.2: 192.168.65.2 is reserved" },
        { ["-ip", "192.168.65.255"], "-ip 192.168.65.255: 192.168.65.255 is the broadcast address" },
        { ["-ip", "10.0.0.5"], "-ip 10.0.0.5: 10.0.0.5 is outside 192.168.65.0/24" },
        { ["-ip", "192.168.65"], "-ip 192.168.65: not an IPv4 address" },
        { ["-publish", "8080"], "-publish 8080: expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]" },
        { ["-publish", "70000:80"], "-publish 70000:80: '70000' is not a port from 1 to 65535" },
        { ["-publish", "8080:80/sctp"], "-publish 8080:80/sctp: unknown protocol 'sctp' (tcp or udp)" },
        { ["-publish", "8080:80", "-publish", "8080:81"], "-publish 127.0.0.1:8080:81/tcp: published twice" },
        { ["-publish", "[::1]:8080:80"], ": the NAT network publishes on IPv4 host addresses only" },
        { ["-publish", "198.51.100.77:8080:80"], "-publish 198.51.100.77:8080:80/tcp: 198.51.100.77 is not an address of this host" },
        { ["-networking", "none", "-publish", "8080:80"], "-publish 127.0.0.1:8080:80/tcp: there is no network with -networking none" },
    };

    [Theory]
    [MemberData(nameof(UsageErrors), MemberType = typeof(NetworkTests))]
    public async Task Network_flag_errors_are_one_line_exit_2_and_create_nothing(string[] flags, string message)
    {
        await AssertRefusedAsync(flags, message);
    }

    [Fact]
    public async Task A_published_port_in_use_is_refused_before_the_vm_boots()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        await AssertRefusedAsync(["-publish", $"{port}:22"], $"-publish 127.0.0.1:{port}:22/tcp: tcp port 127.0.0.1:{port} is already in use on this host");

        using var udp = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var udpPort = ((IPEndPoint)udp.Client.LocalEndPoint!).Port;
        await AssertRefusedAsync(["-publish", $"{udpPort}:7/udp"], $"-publish 127.0.0.1:{udpPort}:7/udp: udp port 127.0.0.1:{udpPort} is already in use on this host");
    }

    private async Task AssertRefusedAsync(string[] flags, string message)
    {
        var before = Directory.GetFileSystemEntries(_scratch.Path).Order().ToList();
        // -accel tcg keeps the notice about software emulation off stderr, so the error is the only line.
        await using var lkrun = Run("state", TestImages.Guest, ["-accel", "tcg", .. flags]);
        Assert.Equal(2, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        // stderr may still be on its way after the exit.
        await lkrun.WaitForErrorAsync(Regex.Escape(message) + ".*\n");
        Assert.Single(lkrun.Error.TrimEnd('\n').Split('\n'));
        Assert.StartsWith("lkrun: ", lkrun.Error);
        Assert.Equal(before, Directory.GetFileSystemEntries(_scratch.Path).Order().ToList());
    }

    /// <summary>Sends one datagram and waits for the echo; the first may be lost while slirp sets up its socket, so it retries.</summary>
    private static async Task<string> UdpRoundTripAsync(int port, string text)
    {
        using var client = new UdpClient();
        client.Connect(IPAddress.Loopback, port);
        for (var attempt = 0; attempt < 10; attempt++)
        {
            await client.SendAsync(Encoding.ASCII.GetBytes(text), TestContext.Current.CancellationToken);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            try
            {
                var reply = await client.ReceiveAsync(timeout.Token);
                return Encoding.ASCII.GetString(reply.Buffer);
            }
            catch (OperationCanceledException)
            {
            }
        }
        Assert.Fail($"no UDP echo from 127.0.0.1:{port}");
        return "";
    }

    private static async Task ServeOnePageAsync(TcpListener listener, string body)
    {
        using var timeout = new CancellationTokenSource(LkrunProcess.BootTimeout);
        using var connection = await listener.AcceptTcpClientAsync(timeout.Token);
        var stream = connection.GetStream();
        var request = new StringBuilder();
        var buffer = new byte[1024];
        while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            var read = await stream.ReadAsync(buffer, timeout.Token);
            if (read == 0)
            {
                break;
            }
            request.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }
        var response = $"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(response), timeout.Token);
    }
}
