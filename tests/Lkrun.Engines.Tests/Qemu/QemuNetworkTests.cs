using System.Net;
using Lkrun.Engines.Qemu;
using Lkrun.Services.Hosting;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Qemu;

public class QemuNetworkTests
{
    private static readonly QemuHost Tcg = new("/usr/bin/qemu-system-x86_64", "tcg");
    private static readonly MacAddress Mac = MacAddress.FromBytes([0x02, 0x4c, 0x4b, 0x00, 0x00, 0x01]);

    private static GuestNetwork Network(string address = "192.168.65.3", string socket = "/state/net.sock", params PublishedPort[] ports) =>
        new(NetworkMode.Vmnet, Mac, IPAddress.Parse(address), new ValueList<PublishedPort>(ports), new StreamLinkEndpoint(socket));

    private static PublishedPort Port(string host, int hostPort, int guestPort, PortProtocol protocol) =>
        new(IPAddress.Parse(host), hostPort, guestPort, protocol);

    private static IReadOnlyList<string> Argv(GuestNetwork? network) =>
        QemuCommandLine.Build(QemuCommandLineTests.Spec(), QemuCommandLineTests.Attachments() with { Network = network }, Tcg, QemuMachine.Q35);

    private static List<string> ValuesOf(IReadOnlyList<string> args, string option) =>
        args.Select((arg, i) => (arg, i)).Where(p => p.arg == option).Select(p => args[p.i + 1]).ToList();

    [Fact]
    public void The_network_device_takes_its_frames_from_the_nat_networks_socket_with_the_networks_mtu()
    {
        var args = Argv(Network("192.168.65.7"));
        Assert.Equal(["stream,id=net0,server=off,addr.type=unix,addr.path=/state/net.sock"], ValuesOf(args, "-netdev"));
        Assert.Contains("virtio-net-pci,netdev=net0,mac=02:4c:4b:00:00:01,host_mtu=65520", ValuesOf(args, "-device"));
    }

    [Fact]
    public void Over_a_datagram_link_qemu_binds_the_devices_socket_and_sends_to_lkruns()
    {
        var args = Argv(Network() with { Link = new DatagramPathsEndpoint("/state,dir/net.sock", "/state,dir/net-device.sock") });
        Assert.Equal(
            ["dgram,id=net0,local.type=unix,local.path=/state,,dir/net-device.sock,remote.type=unix,remote.path=/state,,dir/net.sock"],
            ValuesOf(args, "-netdev"));
        Assert.Contains("virtio-net-pci,netdev=net0,mac=02:4c:4b:00:00:01,host_mtu=65520", ValuesOf(args, "-device"));
    }

    [Fact]
    public void A_socket_pair_is_not_a_link_qemu_can_take()
    {
        var (network, device) = DatagramSocketPair.Create();
        using (network)
        using (device)
        {
            Assert.Throws<EngineException>(() => Argv(Network() with { Link = new DatagramSocketEndpoint(network) }));
        }
    }

    [Theory]
    [InlineData(null, QemuNetworkLink.Default)]
    [InlineData("", QemuNetworkLink.Default)]
    [InlineData("stream", NetworkLink.Stream)]
    [InlineData("datagram", NetworkLink.DatagramPaths)]
    public void The_link_is_the_default_unless_the_environment_picks_one(string? value, NetworkLink expected)
    {
        Assert.Equal(expected, QemuNetworkLink.Choose(value));
    }

    [Fact]
    public void An_unknown_link_in_the_environment_is_a_usage_error_naming_the_variable()
    {
        var error = Assert.Throws<EngineException>(() => QemuNetworkLink.Choose("dgram"));
        Assert.Equal(2, error.ExitCode);
        Assert.Equal("LKRUN_QEMU_NET_LINK=dgram: expected stream or datagram", error.Message);
    }

    [Fact]
    public void Published_ports_and_addresses_are_the_networks_business_not_qemus()
    {
        var args = Argv(Network("192.168.65.4", "/state/net.sock", Port("127.0.0.1", 2222, 22, PortProtocol.Tcp)));
        Assert.DoesNotContain(args, arg => arg.Contains("hostfwd", StringComparison.Ordinal) || arg.Contains("192.168.65", StringComparison.Ordinal));
    }

    [Fact]
    public void A_comma_in_the_socket_path_is_escaped()
    {
        var args = Argv(Network(socket: "/state,dir/net.sock"));
        Assert.Equal(["stream,id=net0,server=off,addr.type=unix,addr.path=/state,,dir/net.sock"], ValuesOf(args, "-netdev"));
    }

    [Fact]
    public void No_network_means_no_network_device_at_all()
    {
        var args = Argv(null);
        Assert.Empty(ValuesOf(args, "-netdev"));
        Assert.Empty(ValuesOf(args, "-nic"));
        Assert.DoesNotContain(ValuesOf(args, "-device"), device => device.StartsWith("virtio-net", StringComparison.Ordinal));
        // -nodefaults keeps QEMU from adding its own network card.
        Assert.Contains("-nodefaults", args);
    }
}
