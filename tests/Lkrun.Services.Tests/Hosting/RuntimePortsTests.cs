using System.Net;
using System.Net.Sockets;
using Lkrun.Services.Hosting;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Publishing;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Hosting;

/// <summary>Publishing ports while the NAT network runs, with libslirp binding the host side; no VM is involved.</summary>
public sealed class RuntimePortsTests : IAsyncDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-publish-").FullName;
    private NatNetwork? _network;

    public async ValueTask DisposeAsync()
    {
        if (_network is not null)
        {
            Assert.False(_network.Completion.IsFaulted, "the network stopped by itself");
            await _network.DisposeAsync();
        }
        Directory.Delete(_directory, recursive: true);
    }

    private RuntimePorts Start(params PublishedPort[] ports)
    {
        var guest = new GuestNetwork(
            NetworkMode.Vmnet, MacAddress.NewLocallyAdministered(), IPAddress.Parse("192.168.65.3"), new ValueList<PublishedPort>(ports),
            new StreamLinkEndpoint(Path.Combine(_directory, StateLayout.NetworkSocketName)));
        _network = NatNetwork.Start(guest);
        return new RuntimePorts(_network, NetworkMode.Vmnet, ports);
    }

    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    [Fact]
    public async Task A_port_published_at_run_time_is_bound_until_it_is_unpublished()
    {
        var publisher = Start();
        var hostPort = FreePort();
        var port = await publisher.PublishAsync($"{hostPort}:80", CancellationToken.None);
        Assert.Equal(new PublishedPort(IPAddress.Loopback, hostPort, 80, PortProtocol.Tcp), port);
        Assert.Equal([port], publisher.Ports);
        Assert.Contains("already in use", PortPreflight.WhyNotBindable(port));

        await publisher.UnpublishAsync(port, CancellationToken.None);
        Assert.Empty(publisher.Ports);
        Assert.Null(PortPreflight.WhyNotBindable(port));
    }

    [Fact]
    public async Task The_checks_of_publish_apply_and_a_refused_port_changes_nothing()
    {
        var first = new PublishedPort(IPAddress.Loopback, FreePort(), 22, PortProtocol.Tcp);
        var publisher = Start(first);

        var twice = await Assert.ThrowsAsync<SpecException>(() => publisher.PublishAsync($"{first.HostPort}:80", CancellationToken.None));
        Assert.Equal($"-publish 127.0.0.1:{first.HostPort}:80/tcp: published twice", twice.Message);
        var guestTwice = await Assert.ThrowsAsync<SpecException>(() => publisher.PublishAsync($"{FreePort()}:22", CancellationToken.None));
        Assert.Contains("published twice", guestTwice.Message);
        var malformed = await Assert.ThrowsAsync<SpecException>(() => publisher.PublishAsync("80", CancellationToken.None));
        Assert.Contains("expected [HOSTIP:]HOSTPORT:GUESTPORT", malformed.Message);

        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen(1);
        var busyPort = ((IPEndPoint)taken.LocalEndPoint!).Port;
        var busy = await Assert.ThrowsAsync<NetworkException>(() => publisher.PublishAsync($"{busyPort}:8080", CancellationToken.None));
        Assert.Equal($"-publish 127.0.0.1:{busyPort}:8080/tcp: tcp port 127.0.0.1:{busyPort} is already in use on this host", busy.Message);

        Assert.Equal([first], publisher.Ports);
    }

    [Theory]
    [InlineData(NetworkMode.None, "there is no network with -networking none")]
    [InlineData(NetworkMode.VzNat, "not available with -networking vznat (reach the guest by its address instead)")]
    public async Task Without_lkruns_network_there_is_nothing_to_publish_on(NetworkMode mode, string why)
    {
        var publisher = new RuntimePorts(null, mode, []);
        var error = await Assert.ThrowsAsync<SpecException>(() => publisher.PublishAsync("8080:80", CancellationToken.None));
        Assert.Equal($"-publish 127.0.0.1:8080:80/tcp: {why}", error.Message);
    }
}
