using System.Net;
using System.Runtime.InteropServices;
using Lkrun.Services.Network.Publishing;
using Lkrun.Services.Network.Shared.Ports;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Shared;

/// <summary>
/// The ports the shared network publishes on the host, each a libslirp host forward to a guest address, and each
/// belonging to the VM attached at that address: they go when its link closes (<see cref="RemoveFor"/>).
/// </summary>
internal sealed class ExposedPorts(SlirpStack stack)
{
    private readonly List<ExposedPort> _ports = [];

    public IReadOnlyList<ExposedPort> All => _ports;

    /// <summary>Forwards the port; the answer says why not when it cannot.</summary>
    public PortResponse Expose(ExposedPort port, Func<IPAddress, bool> isAttached)
    {
        if (!isAttached(port.GuestAddress))
        {
            return new PortResponse($"no VM is attached at {port.GuestAddress}");
        }
        if (Find(port.Port.Protocol, port.Port.HostAddress, port.Port.HostPort) is { } existing)
        {
            return new PortResponse($"{Describe(port.Port)} is published already ({existing})");
        }
        if (!stack.TryAddHostForward(port.Port.Protocol, port.Port.HostAddress, port.Port.HostPort, port.GuestAddress, port.Port.GuestPort, out var errno))
        {
            return new PortResponse(PortPreflight.WhyNotBindable(port.Port) ?? $"cannot listen on {Describe(port.Port)} ({Marshal.GetPInvokeErrorMessage(errno)})");
        }
        _ports.Add(port);
        return PortResponse.Ok;
    }

    public PortResponse Unexpose(UnexposeRequest request)
    {
        if (Find(request.Protocol, request.HostAddress, request.HostPort) is not { } port)
        {
            return new PortResponse($"{PortControl.Name(request.Protocol)} port {request.HostAddress}:{request.HostPort} is not published");
        }
        Remove(port);
        return PortResponse.Ok;
    }

    /// <summary>Removes every port forwarded to <paramref name="guestAddress"/>; returns them.</summary>
    public IReadOnlyList<ExposedPort> RemoveFor(IPAddress guestAddress)
    {
        var removed = _ports.Where(port => port.GuestAddress.Equals(guestAddress)).ToList();
        foreach (var port in removed)
        {
            Remove(port);
        }
        return removed;
    }

    private void Remove(ExposedPort port)
    {
        stack.RemoveHostForward(port.Port.Protocol, port.Port.HostAddress, port.Port.HostPort);
        _ports.Remove(port);
    }

    private ExposedPort? Find(PortProtocol protocol, IPAddress hostAddress, int hostPort) =>
        _ports.FirstOrDefault(port => port.Port.Protocol == protocol && port.Port.HostAddress.Equals(hostAddress) && port.Port.HostPort == hostPort);

    private static string Describe(PublishedPort port) => $"{PortControl.Name(port.Protocol)} port {port.HostAddress}:{port.HostPort}";
}
