using System.Net;
using Lkrun.Spec;

namespace Lkrun.Services.Network;

/// <summary>
/// What an engine needs to give the VM its network interface: the mode, the interface's stable MAC address, the
/// address the network's DHCP server hands to it, and the guest ports to publish on the host.
/// </summary>
public sealed record GuestNetwork(NetworkMode Mode, MacAddress Mac, IPAddress Address, ValueList<PublishedPort> PublishedPorts);

/// <summary>The network cannot be set up as asked. The message is one line naming the flag when the user can fix it.</summary>
public sealed class NetworkException(string message, int exitCode) : Exception(message)
{
    /// <summary>2 for a flag the user can change (like a usage error), 1 for a host problem.</summary>
    public int ExitCode { get; } = exitCode;

    public static NetworkException Usage(string message) => new(message, 2);

    public static NetworkException Host(string message) => new(message, 1);
}
