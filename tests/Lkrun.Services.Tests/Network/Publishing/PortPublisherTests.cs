using System.Net;
using System.Net.Sockets;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Publishing;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network.Publishing;

/// <summary>Publishing on a real libslirp stack; no loop runs, so the host's side is all there is to see.</summary>
public sealed class PortPublisherTests : IDisposable
{
    private readonly SlirpStack _stack = SlirpStack.Create(Leased, NatSubnet.Mtu, new Nowhere());

    public void Dispose() => _stack.Dispose();

    private static int FreePort(SocketType type)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, type, type == SocketType.Stream ? ProtocolType.Tcp : ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    [Fact]
    public void Published_tcp_and_udp_ports_listen_on_the_host()
    {
        var tcp = FreePort(SocketType.Stream);
        var udp = FreePort(SocketType.Dgram);
        PortPublisher.Publish(
            _stack,
            [new PublishedPort(IPAddress.Loopback, tcp, 22, PortProtocol.Tcp), new PublishedPort(IPAddress.Loopback, udp, 7, PortProtocol.Udp)],
            Leased);
        // The kernel completes the handshake into libslirp's listen queue, whether or not libslirp accepts yet.
        using var client = new TcpClient();
        client.Connect(IPAddress.Loopback, tcp);
        Assert.Equal($"udp port 127.0.0.1:{udp} is already in use on this host",
            PortPreflight.WhyNotBindable(new PublishedPort(IPAddress.Loopback, udp, 7, PortProtocol.Udp)));
    }

    [Theory]
    [InlineData(PortProtocol.Tcp)]
    [InlineData(PortProtocol.Udp)]
    public void A_port_taken_since_the_preflight_is_refused_naming_the_flag(PortProtocol protocol)
    {
        var type = protocol == PortProtocol.Tcp ? SocketType.Stream : SocketType.Dgram;
        using var taken = new Socket(AddressFamily.InterNetwork, type, protocol == PortProtocol.Tcp ? ProtocolType.Tcp : ProtocolType.Udp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        if (protocol == PortProtocol.Tcp)
        {
            taken.Listen();
        }
        var port = ((IPEndPoint)taken.LocalEndPoint!).Port;
        var published = new PublishedPort(IPAddress.Loopback, port, 22, protocol);
        var error = Assert.Throws<NetworkException>(() => PortPublisher.Publish(_stack, [published], Leased));
        Assert.Equal(2, error.ExitCode);
        var name = protocol.ToString().ToLowerInvariant();
        Assert.Equal($"-publish 127.0.0.1:{port}:22/{name}: {name} port 127.0.0.1:{port} is already in use on this host", error.Message);
    }
}
