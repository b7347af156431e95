using System.Net;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Spec;

namespace Lkrun.Services.Network;

/// <summary>
/// The VM's network interface: the mode, the interface's MAC address (stable, from the state dir, or the one a
/// shared network granted), the address the network's DHCP server hands to it, the guest ports to publish on the
/// host, the link over which lkrun exchanges the interface's Ethernet frames with the engine, and the MTU the
/// device is to tell the guest.
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
