using System.Net;
using System.Runtime.InteropServices;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Publishing;

/// <summary>
/// Publishes guest ports on the host (<c>-publish</c>): each becomes a libslirp host forward from the host address
/// and port to the guest's address. The network checked before anything was created that the host addresses are
/// IPv4 (<see cref="NatNetwork.Check"/>) and <see cref="PortPreflight"/> that the ports were free.
/// </summary>
internal static class PortPublisher
{
    /// <summary>
    /// Forwards every port in <paramref name="ports"/>. A port another program took since the preflight is a
    /// <see cref="NetworkException"/> naming the flag, in the preflight's words when it can.
    /// </summary>
    public static void Publish(SlirpStack stack, IEnumerable<PublishedPort> ports, IPAddress guestAddress)
    {
        foreach (var port in ports)
        {
            if (!stack.TryAddHostForward(port.Protocol, port.HostAddress, port.HostPort, guestAddress, port.GuestPort, out var errno))
            {
                var why = PortPreflight.WhyNotBindable(port) ?? $"cannot listen on it ({Marshal.GetPInvokeErrorMessage(errno)})";
                throw NetworkException.Usage($"-publish {port}: {why}");
            }
        }
    }

    /// <summary>Stops publishing <paramref name="port"/>; a <see cref="NetworkException"/> when it is not published.</summary>
    public static void Unpublish(SlirpStack stack, PublishedPort port)
    {
        if (!stack.RemoveHostForward(port.Protocol, port.HostAddress, port.HostPort))
        {
            throw NetworkException.Usage($"{port} is not published");
        }
    }
}
