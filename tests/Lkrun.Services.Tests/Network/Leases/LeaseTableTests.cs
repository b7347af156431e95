using System.Net;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Leases;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Network.Leases;

public sealed class LeaseTableTests
{
    private static readonly DateTimeOffset Now = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
    private static readonly Guid Me = Guid.Parse("00000000-0000-4000-8000-ffffffffffff");

    private static IPAddress Host(int n) => NatSubnet.HostAddress(n);

    private static Lease LeaseOf(int identity, int host, int minutesAgo = 0) =>
        new(IdentityOf(identity), Host(host), $"/vm{identity}", Now.AddMinutes(-minutesAgo));

    private static Guid IdentityOf(int n) => Guid.Parse($"00000000-0000-4000-8000-{n:x12}");

    private static Func<Lease, LeaseStatus> Statuses(params (int Identity, LeaseStatus Status)[] statuses) =>
        lease => statuses.First(s => IdentityOf(s.Identity) == lease.Identity).Status;

    private static LeaseAssignment Assign(IReadOnlyList<Lease> leases, Func<Lease, LeaseStatus> statusOf, IPAddress? fixedAddress = null) =>
        LeaseTable.Assign(leases, statusOf, Me, "/me", fixedAddress, Now);

    [Fact]
    public void An_empty_registry_hands_out_the_first_address()
    {
        var result = Assign([], _ => LeaseStatus.Stale);
        Assert.Equal(Host(3), result.Address);
        Assert.Equal([new Lease(Me, Host(3), "/me", Now)], result.Leases);
    }

    [Fact]
    public void A_vm_keeps_its_address_across_runs()
    {
        var mine = new Lease(Me, Host(7), "/me", Now.AddDays(-3));
        var result = Assign([mine], _ => throw new InvalidOperationException("only other leases are looked at"));
        Assert.Equal(Host(7), result.Address);
        Assert.Equal(Now, result.Leases.Single().LastStarted);
    }

    [Fact]
    public void Addresses_of_running_and_kept_vms_are_skipped()
    {
        var result = Assign(
            [LeaseOf(1, 3), LeaseOf(2, 4), LeaseOf(3, 5)],
            Statuses((1, LeaseStatus.Running), (2, LeaseStatus.Kept), (3, LeaseStatus.Stale)));
        Assert.Equal(Host(5), result.Address);
        Assert.DoesNotContain(result.Leases, lease => lease.Identity == IdentityOf(3));
        Assert.Contains(LeaseOf(1, 3), result.Leases);
        Assert.Contains(LeaseOf(2, 4), result.Leases);
    }

    [Fact]
    public void A_vm_whose_address_is_taken_by_a_running_vm_moves()
    {
        var result = Assign(
            [new Lease(Me, Host(3), "/me", Now.AddDays(-1)), LeaseOf(1, 3)],
            Statuses((1, LeaseStatus.Running)));
        Assert.Equal(Host(4), result.Address);
    }

    [Fact]
    public void A_fixed_address_is_given_even_when_a_stopped_vm_keeps_it()
    {
        var result = Assign([LeaseOf(1, 42)], Statuses((1, LeaseStatus.Kept)), Host(42));
        Assert.Equal(Host(42), result.Address);
        Assert.Equal([new Lease(Me, Host(42), "/me", Now)], result.Leases);
    }

    [Fact]
    public void A_fixed_address_held_by_a_running_vm_is_refused()
    {
        var error = Assert.Throws<AddressHeldException>(() =>
            Assign([LeaseOf(1, 3), LeaseOf(2, 42)], Statuses((1, LeaseStatus.Kept), (2, LeaseStatus.Running)), Host(42)));
        Assert.Equal(Host(42), error.Address);
        Assert.Equal("/vm2", error.Holder.StateDirectory);
    }

    [Fact]
    public void When_stopped_vms_keep_every_free_address_the_longest_unused_is_taken_over()
    {
        var leases = Enumerable.Range(NatSubnet.FirstLeasedHost, NatSubnet.LastLeasedHost - NatSubnet.FirstLeasedHost + 1)
            .Select(host => LeaseOf(host, host, minutesAgo: host == 100 ? 500 : host))
            .ToList();
        var result = Assign(leases, _ => LeaseStatus.Kept);
        Assert.Equal(Host(100), result.Address);
        Assert.DoesNotContain(result.Leases, lease => lease.Identity == IdentityOf(100));
    }

    [Fact]
    public void When_running_vms_hold_every_address_there_is_none()
    {
        var leases = LeaseTable.Pool.Select((address, i) => new Lease(IdentityOf(i + 1), address, $"/vm{i}", Now)).ToList();
        Assert.Throws<PoolExhaustedException>(() => Assign(leases, _ => LeaseStatus.Running));
    }

    [Fact]
    public void The_running_holder_of_an_address_is_found_but_never_the_vm_itself()
    {
        var leases = new[] { LeaseOf(1, 3), LeaseOf(2, 4), new Lease(Me, Host(5), "/me", Now) };
        var statuses = Statuses((1, LeaseStatus.Running), (2, LeaseStatus.Kept));
        Assert.Equal(LeaseOf(1, 3), LeaseTable.RunningHolder(leases, statuses, Host(3), Me));
        Assert.Null(LeaseTable.RunningHolder(leases, statuses, Host(4), Me));
        Assert.Null(LeaseTable.RunningHolder(leases, lease => LeaseStatus.Running, Host(5), Me));
    }

    /// <summary>A registry state: leases for identities 1..n on random pool hosts with random statuses, maybe one for Me.</summary>
    private static Arbitrary<(List<Lease> Leases, Dictionary<Guid, LeaseStatus> Statuses, int? Fixed)> Registries()
    {
        var entry = Gen.Choose(NatSubnet.FirstLeasedHost, NatSubnet.LastLeasedHost)
            .SelectMany(_ => Gen.Elements(LeaseStatus.Running, LeaseStatus.Kept, LeaseStatus.Stale), (host, status) => (host, status))
            .SelectMany(_ => Gen.Choose(0, 1000), (e, age) => (e.host, e.status, age));
        var registry = Gen.Choose(0, 40)
            .SelectMany(count => Gen.ListOf(entry, count), (_, entries) => entries)
            .SelectMany(_ => Gen.Choose(0, 6), (entries, choice) => (entries, choice))
            .SelectMany(_ => Gen.Choose(NatSubnet.FirstLeasedHost, NatSubnet.LastLeasedHost), (e, fixedHost) =>
            {
                var leases = e.entries.Select((x, i) => LeaseOf(i + 1, x.host, x.age)).ToList();
                var statuses = e.entries.Select((x, i) => (IdentityOf(i + 1), x.status)).ToDictionary();
                if (e.choice == 0)
                {
                    leases.Add(new Lease(Me, Host(fixedHost), "/me", Now.AddDays(-1)));
                }
                return (leases, statuses, e.choice == 1 ? (int?)fixedHost : null);
            });
        return Arb.From(registry);
    }

    [Property(MaxTest = 500)]
    public Property The_address_is_in_the_pool_and_never_one_a_running_vm_holds() =>
        Prop.ForAll(Registries(), registry =>
        {
            var statusOf = (Lease lease) => registry.Statuses[lease.Identity];
            var held = registry.Leases.Where(l => l.Identity != Me && statusOf(l) == LeaseStatus.Running).Select(l => l.Address).ToHashSet();
            var fixedAddress = registry.Fixed is { } host ? Host(host) : null;
            if (fixedAddress is not null && held.Contains(fixedAddress))
            {
                Assert.Throws<AddressHeldException>(() => Assign(registry.Leases, statusOf, fixedAddress));
                return;
            }
            var result = Assign(registry.Leases, statusOf, fixedAddress);
            Assert.Contains(result.Address, LeaseTable.Pool);
            Assert.DoesNotContain(result.Address, held);
            if (fixedAddress is not null)
            {
                Assert.Equal(fixedAddress, result.Address);
            }
            // Every running lease survives, and no identity is stored twice.
            Assert.All(registry.Leases.Where(l => l.Identity != Me && statusOf(l) == LeaseStatus.Running), l => Assert.Contains(l, result.Leases));
            Assert.Equal(result.Leases.Count, result.Leases.Select(l => l.Identity).Distinct().Count());
            Assert.Single(result.Leases, l => l.Identity == Me && l.Address.Equals(result.Address));
            Assert.DoesNotContain(result.Leases, l => l.Identity != Me && statusOf(l) == LeaseStatus.Stale);
        });

    [Property(MaxTest = 300)]
    public Property Without_a_fixed_address_a_vm_keeps_its_own_unless_a_running_vm_holds_it() =>
        Prop.ForAll(Registries(), registry =>
        {
            var statusOf = (Lease lease) => registry.Statuses[lease.Identity];
            var own = registry.Leases.FirstOrDefault(l => l.Identity == Me);
            var held = registry.Leases.Where(l => l.Identity != Me && statusOf(l) == LeaseStatus.Running).Select(l => l.Address).ToHashSet();
            if (own is null || held.Count == LeaseTable.Pool.Count())
            {
                return;
            }
            var result = Assign(registry.Leases, statusOf);
            Assert.Equal(!held.Contains(own.Address), result.Address.Equals(own.Address));
        });
}
