using System.Net;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Spec;

namespace Lkrun.Services.Network;

/// <summary>
/// The VM's network interface: the mode, the interface's stable MAC address, the address the network's DHCP server
/// hands to it, the guest ports to publish on the host, and the link over which the network exchanges the
/// interface's Ethernet frames with the engine.
/// </summary>
public sealed record GuestNetwork(NetworkMode Mode, MacAddress Mac, IPAddress Address, ValueList<PublishedPort> PublishedPorts, FrameLinkEndpoint Link)
{
    /// <summary>The interface's MTU, which DHCP hands out: lkrun's large one unless the engine's device cannot take it.</summary>
    public int Mtu { get; init; } = NatSubnet.Mtu;
}

/// <summary>The network cannot be set up as asked. The message is one line naming the flag when the user can fix it.</summary>
public sealed class NetworkException(string message, int exitCode) : Exception(message), IUserError
{
    /// <summary>2 for a flag the user can change (like a usage error), 1 for a host problem.</summary>
    public int ExitCode { get; } = exitCode;

    public static NetworkException Usage(string message) => new(message, 2);

    public static NetworkException Host(string message) => new(message, 1);
}
