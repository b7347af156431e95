using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Publishing;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Network.Publishing;

public sealed class PortPreflightTests
{
    private static PublishedPort Tcp(int port, IPAddress? host = null) => new(host ?? IPAddress.Loopback, port, 80, PortProtocol.Tcp);

    private static PublishedPort Udp(int port) => new(IPAddress.Loopback, port, 7, PortProtocol.Udp);

    private static Socket Listener(SocketType type, ProtocolType protocol)
    {
        var socket = new Socket(AddressFamily.InterNetwork, type, protocol);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        if (type == SocketType.Stream)
        {
            socket.Listen();
        }
        return socket;
    }

    private static int PortOf(Socket socket) => ((IPEndPoint)socket.LocalEndPoint!).Port;

    [Fact]
    public void A_free_port_passes_and_stays_free()
    {
        int port;
        using (var probe = Listener(SocketType.Stream, ProtocolType.Tcp))
        {
            port = PortOf(probe);
        }
        Assert.Null(PortPreflight.WhyNotBindable(Tcp(port)));
        Assert.Null(PortPreflight.WhyNotBindable(Tcp(port)));
    }

    [Fact]
    public void A_tcp_port_with_a_listener_is_in_use()
    {
        using var listener = Listener(SocketType.Stream, ProtocolType.Tcp);
        var why = PortPreflight.WhyNotBindable(Tcp(PortOf(listener)));
        Assert.Equal($"tcp port 127.0.0.1:{PortOf(listener)} is already in use on this host", why);
    }

    [Fact]
    public void A_udp_port_with_a_socket_is_in_use_but_its_tcp_twin_is_free()
    {
        using var socket = Listener(SocketType.Dgram, ProtocolType.Udp);
        Assert.Equal($"udp port 127.0.0.1:{PortOf(socket)} is already in use on this host", PortPreflight.WhyNotBindable(Udp(PortOf(socket))));
        Assert.Null(PortPreflight.WhyNotBindable(Tcp(PortOf(socket))));
    }

    [Fact]
    public void A_udp_socket_that_allows_sharing_still_holds_its_port()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.SetRawSocketOption(1, 2, BitConverter.GetBytes(1));
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Assert.NotNull(PortPreflight.WhyNotBindable(Udp(PortOf(socket))));
    }

    [Fact]
    public void A_port_left_in_time_wait_is_free_as_it_is_for_qemu()
    {
        using var listener = Listener(SocketType.Stream, ProtocolType.Tcp);
        var port = PortOf(listener);
        using (var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            client.Connect(IPAddress.Loopback, port);
            using var accepted = listener.Accept();
            // The side that closes first keeps the connection in TIME_WAIT: here the listening side.
            accepted.Shutdown(SocketShutdown.Both);
            accepted.Close();
            client.Receive(new byte[1]);
        }
        listener.Close();
        Assert.Null(PortPreflight.WhyNotBindable(Tcp(port)));
    }

    [Fact]
    public void An_address_of_another_host_is_named()
    {
        // From a documentation range (RFC 5737), and checked not to be this host's own.
        var elsewhere = IPAddress.Parse("198.51.100.77");
        Assert.DoesNotContain(elsewhere, NetworkInterface.GetAllNetworkInterfaces()
            .SelectMany(nic => nic.GetIPProperties().UnicastAddresses).Select(unicast => unicast.Address));
        Assert.Equal("198.51.100.77 is not an address of this host", PortPreflight.WhyNotBindable(Tcp(18080, elsewhere)));
    }
}
