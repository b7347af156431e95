using System.Net;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Publishing;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Services.Network;

/// <summary>
/// Prepares the VM's network in two steps around the creation of the state dir: <see cref="Check"/> finds the
/// user's mistakes (a published port in use, a fixed address held by a running VM) while nothing exists yet;
/// <see cref="Attach"/> then leases the address, loads the stable MAC, and records the address for scripts.
/// The lease stays marked running until this object is disposed.
/// </summary>
public sealed class NetworkSetup : IDisposable
{
    private readonly NetworkSpec _network;
    private readonly LeaseRegistry _registry;
    private HeldLease? _lease;

    private NetworkSetup(NetworkSpec network, LeaseRegistry registry)
    {
        _network = network;
        _registry = registry;
    }

    /// <summary>Checks the network flags against the network's limits and the host's live state; creates nothing.</summary>
    public static NetworkSetup Check(NetworkSpec network, string stateDirectory, LeaseRegistry registry)
    {
        NatNetwork.Check(network);
        foreach (var port in network.PublishedPorts)
        {
            if (PortPreflight.WhyNotBindable(port) is { } why)
            {
                throw NetworkException.Usage($"-publish {port}: {why}");
            }
        }
        if (network.FixedAddress is { } address)
        {
            if (OnRegistry(registry, () => registry.FindRunningHolder(address, stateDirectory)) is { } holder)
            {
                throw AddressInUse(address, holder);
            }
        }
        return new NetworkSetup(network, registry);
    }

    /// <summary>
    /// Leases the guest's address to <paramref name="identity"/> and gathers what the network needs to serve the VM's
    /// interface over <paramref name="link"/>; null for <c>-networking none</c>. <paramref name="notice"/> receives the
    /// line announcing the address.
    /// </summary>
    public GuestNetwork? Attach(StateDirectory state, Guid identity, Action<string> notice, FrameLinkEndpoint link)
    {
        switch (_network.Mode)
        {
            case NetworkMode.None:
                return null;
            case NetworkMode.Vmnet:
                break;
            case NetworkMode.Vpnkit:
                throw NetworkException.Usage("-networking vpnkit: not available on this backend");
            case NetworkMode.DockerForMac:
                throw NetworkException.Usage("-networking docker-for-mac: not available on this backend");
        }
        var mac = StableMacAddress.LoadOrCreate(state);
        _lease = OnRegistry(_registry, () => _registry.Acquire(identity, state.Path, _network.FixedAddress));
        if (_registry.Repaired is { } repaired)
        {
            notice(repaired);
        }
        var addressFile = state.Layout.Address;
        if (!File.Exists(addressFile))
        {
            state.TrackCreated(addressFile);
        }
        File.WriteAllText(addressFile, $"{_lease.Address}\n");
        notice($"guest address {_lease.Address}");
        return new GuestNetwork(_network.Mode, mac, _lease.Address, _network.PublishedPorts, link);
    }

    public void Dispose() => _lease?.Dispose();

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
