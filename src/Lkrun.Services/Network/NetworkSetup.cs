using System.Net;
using System.Net.Sockets;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Publishing;
using Lkrun.Services.Network.Shared;
using Lkrun.Services.Network.Shared.Ports;
using Lkrun.Services.Network.Shared.Vpnkit;
using Lkrun.Services.Network.Slirp;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Services.Network;

/// <summary>
/// Prepares the VM's network in three steps around the creation of the state dir: <see cref="Check"/> finds the
/// user's mistakes (a published port in use, a fixed address held by a running VM, a shared network that is not
/// there) while nothing exists yet; <see cref="Attach"/> then gives the interface its MAC and address and records
/// the address for scripts; <see cref="Start"/> starts what serves the interface while the VM runs. On the private
/// NAT network lkrun leases the address and the lease stays marked running until this object is disposed; on a
/// shared network (<c>-networking vpnkit</c>, <c>docker-for-mac</c>) the network grants the MAC and the address,
/// and holds them while the VM's link is open.
/// </summary>
public sealed class NetworkSetup : IDisposable
{
    private readonly NetworkSpec _network;
    private readonly LeaseRegistry _registry;
    private readonly (string Ethernet, string? Port)? _sockets;
    private HeldLease? _lease;
    private VpnkitAttachment? _attachment;

    private NetworkSetup(NetworkSpec network, LeaseRegistry registry, (string, string?)? sockets)
    {
        _network = network;
        _registry = registry;
        _sockets = sockets;
    }

    /// <summary>Checks the network flags against the network's limits and the host's live state; creates nothing.</summary>
    public static NetworkSetup Check(NetworkSpec network, string stateDirectory, LeaseRegistry registry)
    {
        (string, string?)? sockets = null;
        switch (network.Mode)
        {
            case NetworkMode.Vmnet:
                NatNetwork.Check(network);
                break;
            case NetworkMode.Vpnkit or NetworkMode.DockerForMac:
                sockets = CheckShared(network, stateDirectory);
                break;
        }
        foreach (var port in network.PublishedPorts)
        {
            if (PortPreflight.WhyNotBindable(port) is { } why)
            {
                throw NetworkException.Usage($"-publish {port}: {why}");
            }
        }
        // Docker Desktop hands out its own addresses; lkrun's networks all lease from the user's registry.
        if (network.FixedAddress is { } address && network.Mode != NetworkMode.DockerForMac)
        {
            if (OnRegistry(registry, () => registry.FindRunningHolder(address, stateDirectory)) is { } holder)
            {
                throw AddressInUse(address, holder);
            }
        }
        return new NetworkSetup(network, registry, sockets);
    }

    /// <summary>
    /// Gives the VM's interface its MAC and address and gathers what the network needs to serve it over
    /// <paramref name="link"/>; null for <c>-networking none</c>. On a shared network this attaches to it (starting
    /// the VM's own for <c>-networking vpnkit</c>) and publishes the ports there. <paramref name="notice"/> receives
    /// the line announcing the address.
    /// </summary>
    public GuestNetwork? Attach(StateDirectory state, Guid identity, Action<string> notice, FrameLinkEndpoint link)
    {
        switch (_network.Mode)
        {
            case NetworkMode.None:
                return null;
            case NetworkMode.Vpnkit or NetworkMode.DockerForMac:
                return AttachShared(state, identity, notice, link);
        }
        var mac = StableMacAddress.LoadOrCreate(state);
        _lease = OnRegistry(_registry, () => _registry.Acquire(identity, state.Path, _network.FixedAddress));
        if (_registry.Repaired is { } repaired)
        {
            notice(repaired);
        }
        Announce(state, _lease.Address, notice);
        return new GuestNetwork(_network.Mode, mac, _lease.Address, _network.PublishedPorts, link);
    }

    /// <summary>Starts what serves <paramref name="network"/>, the interface <see cref="Attach"/> made, while the VM runs.</summary>
    public INetworkService Start(GuestNetwork network, Action<string> notice)
    {
        if (network.Mode is NetworkMode.Vpnkit or NetworkMode.DockerForMac)
        {
            var attachment = _attachment ?? throw new InvalidOperationException("the VM is not attached to its shared network");
            _attachment = null;
            return SharedNetworkRelay.Start(attachment, network.Link, network.Address, _sockets!.Value.Port, notice);
        }
        return NatNetwork.Start(network, notice);
    }

    public void Dispose()
    {
        _lease?.Dispose();
        _attachment?.Dispose();
    }

    /// <summary>Finds the shared network's sockets (the state dir's for a network of the VM's own) and checks what can be checked now.</summary>
    private static (string, string?) CheckShared(NetworkSpec network, string stateDirectory)
    {
        if (network.PublishedPorts.FirstOrDefault(port => port.HostAddress.AddressFamily != AddressFamily.InterNetwork) is { } port)
        {
            throw NetworkException.Usage($"-publish {port}: the shared network publishes on IPv4 host addresses only");
        }
        if (network.Mode == NetworkMode.DockerForMac)
        {
            return DockerDesktop.Find(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));
        }
        if (network.VpnkitEthernetSocket is { } ethernet)
        {
            if (!File.Exists(ethernet))
            {
                throw NetworkException.Usage($"-networking vpnkit,{ethernet}: no such socket");
            }
            if (network.VpnkitPortSocket is { } portSocket && !File.Exists(portSocket))
            {
                throw NetworkException.Usage($"-networking vpnkit,{ethernet},{portSocket}: no such socket {portSocket}");
            }
            return (ethernet, network.VpnkitPortSocket);
        }
        // The VM's own network runs this binary's network service, which needs libslirp.
        SlirpStack.CheckLibrary();
        var layout = new StateLayout(stateDirectory);
        return (layout.VpnkitEthernetSocket, layout.VpnkitPortSocket);
    }

    private GuestNetwork AttachShared(StateDirectory state, Guid identity, Action<string> notice, FrameLinkEndpoint link)
    {
        var (ethernet, portSocket) = _sockets!.Value;
        var own = _network.Mode == NetworkMode.Vpnkit && _network.VpnkitEthernetSocket is null;
        _attachment = own ? AttachOwn(state.Layout, identity) : Open(ethernet, identity);
        var address = _attachment.ProbeAddress();
        if (_network.Mode == NetworkMode.Vpnkit)
        {
            // An lkrun network leases by identity; the VM's state dir keeps the address for its next run.
            OnRegistry(_registry, () => { _registry.RecordStateDirectory(identity, state.Path); return true; });
        }
        var mac = _attachment.Vif.Mac;
        var macFile = state.Layout.Mac;
        if (!File.Exists(macFile))
        {
            state.TrackCreated(macFile);
        }
        File.WriteAllText(macFile, $"{mac}\n");
        Announce(state, address, notice);
        if (_network.PublishedPorts.Count > 0)
        {
            using var ports = PortControlClient.Connect(portSocket!);
            foreach (var port in _network.PublishedPorts)
            {
                if (ports.Send(new ExposeRequest(port, address)).Error is { } error)
                {
                    throw NetworkException.Usage($"-publish {port}: {error}");
                }
            }
        }
        return new GuestNetwork(_network.Mode, mac, address, _network.PublishedPorts, link) { Mtu = _attachment.Vif.Mtu };
    }

    /// <summary>
    /// Attaches to the VM's own network, starting it when nothing serves its sockets. One that was there already
    /// may be stopping just then (it waits a little for VMs after its last one leaves); then a new one is started.
    /// </summary>
    private VpnkitAttachment AttachOwn(StateLayout layout, Guid identity)
    {
        var started = PrivateNetwork.EnsureRunning(layout);
        try
        {
            return Open(layout.VpnkitEthernetSocket, identity);
        }
        catch (NetworkException) when (!started)
        {
            PrivateNetwork.EnsureRunning(layout);
            return Open(layout.VpnkitEthernetSocket, identity);
        }
    }

    /// <summary>The handshake; a refusal is the user's to fix when it is about the address they asked for.</summary>
    private VpnkitAttachment Open(string ethernet, Guid identity)
    {
        try
        {
            return VpnkitAttachment.Open(ethernet, identity, _network.FixedAddress);
        }
        catch (VpnkitRefusedException e)
        {
            throw _network.FixedAddress is { } address
                ? NetworkException.Usage($"-ip {address}: the network at {ethernet} refused it: {e.Message}")
                : NetworkException.Host($"the network at {ethernet} refused the VM: {e.Message}");
        }
    }

    private static void Announce(StateDirectory state, IPAddress address, Action<string> notice)
    {
        var addressFile = state.Layout.Address;
        if (!File.Exists(addressFile))
        {
            state.TrackCreated(addressFile);
        }
        File.WriteAllText(addressFile, $"{address}\n");
        notice($"guest address {address}");
    }

    private static NetworkException AddressInUse(IPAddress address, Lease holder) =>
        NetworkException.Usage($"-ip {address}: in use by the running VM of {holder.StateDirectory}");

    private static T OnRegistry<T>(LeaseRegistry registry, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (AddressHeldException e)
        {
            throw AddressInUse(e.Address, e.Holder);
        }
        catch (Exception e) when (e is PoolExhaustedException or IdentityRunningException)
        {
            throw NetworkException.Host(e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw NetworkException.Host($"lease registry {registry.Directory}: {e.Message}");
        }
    }
}
