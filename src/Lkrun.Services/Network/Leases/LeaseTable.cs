using System.Net;
using System.Text.Json.Serialization;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Leases;

/// <summary>One VM's address on the NAT network, keyed by its identity (<c>vpnkit.uuid</c>).</summary>
public sealed record Lease(
    Guid Identity,
    [property: JsonConverter(typeof(IPAddressJsonConverter))] IPAddress Address,
    string StateDirectory,
    DateTimeOffset LastStarted);

/// <summary>Where a lease's VM is now, as far as the registry can tell.</summary>
public enum LeaseStatus
{
    /// <summary>An lkrun holds the lease's running lock: the address is in use.</summary>
    Running,

    /// <summary>Stopped, and its state dir still holds the identity: the address is kept for its next run.</summary>
    Kept,

    /// <summary>Stopped, and its state dir is gone or belongs to another VM now: the lease can be dropped.</summary>
    Stale,
}

/// <summary>The address the registry chose, and the leases to store afterwards.</summary>
public sealed record LeaseAssignment(IPAddress Address, IReadOnlyList<Lease> Leases);

/// <summary>
/// The address policy, free of files and locks. A VM keeps its last address while no running VM holds it; a new
/// VM gets the lowest address that no running VM holds and no stopped VM keeps; when every address is kept, the
/// one kept longest without a run is taken over.
/// </summary>
public static class LeaseTable
{
    public static IEnumerable<IPAddress> Pool =>
        Enumerable.Range(NatSubnet.FirstLeasedHost, NatSubnet.LastLeasedHost - NatSubnet.FirstLeasedHost + 1)
            .Select(NatSubnet.HostAddress);

    /// <summary>The running lease, other than <paramref name="identity"/>'s, that holds <paramref name="address"/>.</summary>
    public static Lease? RunningHolder(IReadOnlyList<Lease> leases, Func<Lease, LeaseStatus> statusOf, IPAddress address, Guid identity) =>
        leases.FirstOrDefault(lease => lease.Identity != identity && lease.Address.Equals(address) && statusOf(lease) == LeaseStatus.Running);

    /// <summary>
    /// Gives <paramref name="identity"/> an address: <paramref name="fixedAddress"/> when it is set, else one by the
    /// policy above. Throws <see cref="AddressHeldException"/> when the fixed address is held by a running VM and
    /// <see cref="PoolExhaustedException"/> when running VMs hold every address.
    /// </summary>
    public static LeaseAssignment Assign(
        IReadOnlyList<Lease> leases,
        Func<Lease, LeaseStatus> statusOf,
        Guid identity,
        string stateDirectory,
        IPAddress? fixedAddress,
        DateTimeOffset now)
    {
        var others = leases
            .Where(lease => lease.Identity != identity)
            .Select(lease => (Lease: lease, Status: statusOf(lease)))
            .Where(entry => entry.Status != LeaseStatus.Stale)
            .ToList();
        var running = others.Where(e => e.Status == LeaseStatus.Running).Select(e => e.Lease.Address).ToHashSet();

        IPAddress address;
        if (fixedAddress is not null)
        {
            if (RunningHolder(leases, statusOf, fixedAddress, identity) is { } holder)
            {
                throw new AddressHeldException(fixedAddress, holder);
            }
            address = fixedAddress;
        }
        else if (leases.FirstOrDefault(lease => lease.Identity == identity) is { } own && !running.Contains(own.Address) && InPool(own.Address))
        {
            address = own.Address;
        }
        else
        {
            var keptSince = others
                .Where(e => e.Status == LeaseStatus.Kept)
                .GroupBy(e => e.Lease.Address)
                .ToDictionary(g => g.Key, g => g.Max(e => e.Lease.LastStarted));
            var free = Pool.Where(candidate => !running.Contains(candidate)).ToList();
            if (free.Count == 0)
            {
                throw new PoolExhaustedException();
            }
            address = free.FirstOrDefault(candidate => !keptSince.ContainsKey(candidate))
                ?? free.MinBy(candidate => keptSince[candidate])!;
        }

        var stored = others
            .Where(e => !e.Lease.Address.Equals(address))
            .Select(e => e.Lease)
            .Append(new Lease(identity, address, stateDirectory, now))
            .OrderBy(lease => NatSubnet.HostNumberOf(lease.Address))
            .ToList();
        return new LeaseAssignment(address, stored);
    }

    private static bool InPool(IPAddress address) =>
        NatSubnet.HostNumberOf(address) is >= NatSubnet.FirstLeasedHost and <= NatSubnet.LastLeasedHost;
}

/// <summary>A fixed address (<c>-ip</c>) is in use by another running VM.</summary>
public sealed class AddressHeldException(IPAddress address, Lease holder)
    : Exception($"{address} is in use by the running VM of {holder.StateDirectory}")
{
    public IPAddress Address { get; } = address;

    public Lease Holder { get; } = holder;
}

/// <summary>Every address of the NAT network is held by a running VM.</summary>
public sealed class PoolExhaustedException()
    : Exception($"every address from {NatSubnet.HostAddress(NatSubnet.FirstLeasedHost)} to {NatSubnet.HostAddress(NatSubnet.LastLeasedHost)} is in use by a running VM");
