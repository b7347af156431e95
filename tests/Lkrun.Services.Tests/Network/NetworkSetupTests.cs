using System.Net;
using System.Net.Sockets;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Network.Links;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Network;

public sealed class NetworkSetupTests : IDisposable
{
    private readonly string _parent = Directory.CreateTempSubdirectory("lkrun-net-").FullName;
    private readonly List<string> _notices = [];

    public void Dispose() => Directory.Delete(_parent, recursive: true);

    private LeaseRegistry Registry => new(Path.Combine(_parent, "registry"));

    private string StatePath(string name) => Path.Combine(_parent, name);

    private GuestNetwork? Run(NetworkSpec spec, StateDirectory state, out NetworkSetup setup)
    {
        setup = NetworkSetup.Check(spec, state.Path, Registry);
        return setup.Attach(state, VmIdentity.LoadOrCreate(state), _notices.Add, new StreamLinkEndpoint(state.Layout.NetworkSocket));
    }

    [Fact]
    public void The_default_network_leases_an_address_and_announces_it()
    {
        using var state = StateDirectory.Acquire(StatePath("a"));
        var published = new PublishedPort(IPAddress.Loopback, 18080, 80, PortProtocol.Tcp);
        var network = Run(NetworkSpec.Default with { PublishedPorts = new[] { published } }, state, out var setup);
        using (setup)
        {
            Assert.NotNull(network);
            Assert.Equal(NetworkMode.Vmnet, network.Mode);
            Assert.Equal(IPAddress.Parse("192.168.65.3"), network.Address);
            Assert.Equal(StableMacAddress.LoadOrCreate(state), network.Mac);
            Assert.Equal([published], network.PublishedPorts);
            Assert.Equal(new StreamLinkEndpoint(state.Layout.NetworkSocket), network.Link);
            Assert.Equal("192.168.65.3\n", File.ReadAllText(state.Layout.Address));
            Assert.Equal(["guest address 192.168.65.3"], _notices);
        }
    }

    [Fact]
    public void An_ipv6_host_address_is_a_usage_error_before_anything_is_checked_on_the_host()
    {
        PublishedPort Port(string host, int hostPort) => new(IPAddress.Parse(host), hostPort, 80, PortProtocol.Tcp);
        var spec = NetworkSpec.Default with { PublishedPorts = new[] { Port("127.0.0.1", 8080), Port("::1", 8081) } };
        var error = Assert.Throws<NetworkException>(() => NetworkSetup.Check(spec, StatePath("a"), Registry));
        Assert.Equal(2, error.ExitCode);
        Assert.Equal("-publish [::1]:8081:80/tcp: the NAT network publishes on IPv4 host addresses only", error.Message);
        Assert.False(Directory.Exists(Registry.Directory));
        Assert.False(Directory.Exists(StatePath("a")));
    }

    [Fact]
    public void No_network_means_no_device_no_lease_and_no_files()
    {
        using var state = StateDirectory.Acquire(StatePath("a"));
        using var _ = NetworkSetup.Check(NetworkSpec.Default with { Mode = NetworkMode.None }, state.Path, Registry);
        Assert.Null(_.Attach(state, Guid.NewGuid(), _notices.Add, new StreamLinkEndpoint(state.Layout.NetworkSocket)));
        Assert.False(File.Exists(state.Layout.Address));
        Assert.False(File.Exists(state.Layout.Mac));
        Assert.False(Directory.Exists(Registry.Directory));
        Assert.Empty(_notices);
    }

    [Fact]
    public void A_published_port_in_use_is_a_usage_error_naming_the_flag()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var spec = NetworkSpec.Default with { PublishedPorts = new[] { new PublishedPort(IPAddress.Loopback, port, 22, PortProtocol.Tcp) } };
        var error = Assert.Throws<NetworkException>(() => NetworkSetup.Check(spec, StatePath("a"), Registry));
        Assert.Equal(2, error.ExitCode);
        Assert.Equal($"-publish 127.0.0.1:{port}:22/tcp: tcp port 127.0.0.1:{port} is already in use on this host", error.Message);
    }

    [Fact]
    public void A_fixed_address_of_a_running_vm_is_refused_before_the_state_dir_exists()
    {
        using var first = StateDirectory.Acquire(StatePath("a"));
        Run(NetworkSpec.Default with { FixedAddress = IPAddress.Parse("192.168.65.9") }, first, out var running);
        using (running)
        {
            var spec = NetworkSpec.Default with { FixedAddress = IPAddress.Parse("192.168.65.9") };
            var error = Assert.Throws<NetworkException>(() => NetworkSetup.Check(spec, StatePath("b"), Registry));
            Assert.Equal(2, error.ExitCode);
            Assert.Equal($"-ip 192.168.65.9: in use by the running VM of {first.Path}", error.Message);
            Assert.False(Directory.Exists(StatePath("b")));
        }
    }

    [Fact]
    public void Of_two_lkruns_that_pass_the_check_together_the_second_to_lease_gets_the_same_error()
    {
        var spec = NetworkSpec.Default with { FixedAddress = IPAddress.Parse("192.168.65.9") };
        using var late = StateDirectory.Acquire(StatePath("b"));
        using var lateSetup = NetworkSetup.Check(spec, late.Path, Registry);
        using var first = StateDirectory.Acquire(StatePath("a"));
        Run(spec, first, out var running);
        using (running)
        {
            var error = Assert.Throws<NetworkException>(() => lateSetup.Attach(late, VmIdentity.LoadOrCreate(late), _notices.Add, new StreamLinkEndpoint(late.Layout.NetworkSocket)));
            Assert.Equal(2, error.ExitCode);
            Assert.Equal($"-ip 192.168.65.9: in use by the running VM of {first.Path}", error.Message);
        }
    }

    [Fact]
    public void The_lease_is_running_until_the_setup_is_disposed()
    {
        using var first = StateDirectory.Acquire(StatePath("a"));
        var firstNetwork = Run(NetworkSpec.Default, first, out var firstSetup);
        using var second = StateDirectory.Acquire(StatePath("b"));
        using (firstSetup)
        {
            var secondNetwork = Run(NetworkSpec.Default, second, out var secondSetup);
            secondSetup.Dispose();
            Assert.NotEqual(firstNetwork!.Address, secondNetwork!.Address);
        }
        var fixedSpec = NetworkSpec.Default with { FixedAddress = firstNetwork.Address };
        using var _ = NetworkSetup.Check(fixedSpec, second.Path, Registry);
    }

    [Theory]
    [InlineData(NetworkMode.Vpnkit, "-networking vpnkit: not available on this backend")]
    [InlineData(NetworkMode.DockerForMac, "-networking docker-for-mac: not available on this backend")]
    public void Modes_served_by_vpnkit_are_not_leased_here(NetworkMode mode, string message)
    {
        using var state = StateDirectory.Acquire(StatePath("a"));
        using var setup = NetworkSetup.Check(NetworkSpec.Default with { Mode = mode }, state.Path, Registry);
        var error = Assert.Throws<NetworkException>(() => setup.Attach(state, Guid.NewGuid(), _notices.Add, new StreamLinkEndpoint(state.Layout.NetworkSocket)));
        Assert.Equal(2, error.ExitCode);
        Assert.Equal(message, error.Message);
        Assert.False(Directory.Exists(Registry.Directory));
    }
}
