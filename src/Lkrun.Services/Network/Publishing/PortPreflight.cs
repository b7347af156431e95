using System.Net;
using System.Net.Sockets;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Publishing;

/// <summary>
/// Tries each published host port before the VM boots, so a port in use is a one-line error rather than a VM
/// that fails to start. The sockets mirror libslirp's listeners: a TCP listener with SO_REUSEADDR (a port whose
/// old connections linger in TIME_WAIT is free), a UDP socket without it (two UDP sockets with it could share a
/// port). Another program can still take the port between this check and the NAT network's own bind; that bind
/// then fails in this check's words (<see cref="PortPublisher"/>).
/// </summary>
public static class PortPreflight
{
    /// <summary>Why <paramref name="port"/>'s host side cannot be bound now, or null when it can.</summary>
    public static string? WhyNotBindable(PublishedPort port)
    {
        var endPoint = new IPEndPoint(port.HostAddress, port.HostPort);
        using var socket = port.Protocol == PortProtocol.Tcp
            ? new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(endPoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            if (port.Protocol == PortProtocol.Tcp)
            {
                SetReuseAddressOnly(socket);
                socket.Bind(endPoint);
                socket.Listen(1);
            }
            else
            {
                socket.Bind(endPoint);
            }
            return null;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode switch
            {
                SocketError.AddressAlreadyInUse => $"{Describe(port)} is already in use on this host",
                SocketError.AddressNotAvailable => $"{port.HostAddress} is not an address of this host",
                SocketError.AccessDenied => $"no permission to listen on {Describe(port)} (ports below 1024 need privileges)",
                _ => $"cannot listen on {Describe(port)} ({e.Message})",
            };
        }
    }

    private static string Describe(PublishedPort port) =>
        $"{port.Protocol.ToString().ToLowerInvariant()} port {port.HostAddress}:{port.HostPort}";

    /// <summary>
    /// .NET's ReuseAddress option also sets SO_REUSEPORT on unix, which would let the bind share a port with a
    /// listener that has SO_REUSEPORT too; libslirp sets SO_REUSEADDR alone, so set exactly that.
    /// </summary>
    private static void SetReuseAddressOnly(Socket socket)
    {
        var (level, name) = OperatingSystem.IsLinux() ? (1, 2) : (0xffff, 0x4);
        socket.SetRawSocketOption(level, name, BitConverter.GetBytes(1));
    }
}
