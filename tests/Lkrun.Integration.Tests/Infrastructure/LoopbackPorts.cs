using System.Net;
using System.Net.Sockets;

namespace Lkrun.Integration.Tests.Infrastructure;

public static class LoopbackPorts
{
    /// <summary>A port on 127.0.0.1 that nothing uses at the moment of the call, for a test to publish.</summary>
    public static int Free(SocketType type = SocketType.Stream)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, type, type == SocketType.Stream ? ProtocolType.Tcp : ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
