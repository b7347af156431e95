using System.Diagnostics;
using System.Net;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.State;
using Lkrun.Services.Tests.Infrastructure;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Network.Leases;

public sealed class LeaseRegistryTests : IDisposable
{
    private readonly string _parent = Directory.CreateTempSubdirectory("lkrun-leases-").FullName;

    public void Dispose() => Directory.Delete(_parent, recursive: true);

    private string RegistryPath => Path.Combine(_parent, "registry");

    private LeaseRegistry Registry() => new(RegistryPath);

    private static IPAddress Host(int n) => NatSubnet.HostAddress(n);

    /// <summary>A state dir that holds <paramref name="identity"/>, as lkrun leaves it after a run.</summary>
    private (Guid Identity, string Path) Vm(string name)
    {
        var path = Path.Combine(_parent, name);
        Directory.CreateDirectory(path);
        var identity = Guid.NewGuid();
        File.WriteAllText(Path.Combine(path, StateLayout.UuidName), identity + "\n");
        return (identity, path);
    }

    [Fact]
    public void The_first_vm_gets_the_first_address_and_keeps_it_on_its_next_run()
    {
        var vm = Vm("a");
        using (var lease = Registry().Acquire(vm.Identity, vm.Path, null))
        {
            Assert.Equal(Host(3), lease.Address);
        }
        using (var again = Registry().Acquire(vm.Identity, vm.Path, null))
        {
            Assert.Equal(Host(3), again.Address);
        }
    }

    [Fact]
    public void Vms_running_together_get_different_addresses()
    {
        var a = Vm("a");
        var b = Vm("b");
        using var first = Registry().Acquire(a.Identity, a.Path, null);
        using var second = Registry().Acquire(b.Identity, b.Path, null);
        Assert.Equal(Host(3), first.Address);
        Assert.Equal(Host(4), second.Address);
    }

    [Fact]
    public void A_stopped_vm_keeps_its_address_while_its_state_dir_exists()
    {
        var a = Vm("a");
        var b = Vm("b");
        Registry().Acquire(a.Identity, a.Path, null).Dispose();
        using (var second = Registry().Acquire(b.Identity, b.Path, null))
        {
            Assert.Equal(Host(4), second.Address);
        }
        Directory.Delete(a.Path, recursive: true);
        var c = Vm("c");
        using var third = Registry().Acquire(c.Identity, c.Path, null);
        Assert.Equal(Host(3), third.Address);
    }

    [Fact]
    public void A_fixed_address_held_by_a_running_vm_is_refused_and_its_holder_named()
    {
        var a = Vm("a");
        var b = Vm("b");
        using (var first = Registry().Acquire(a.Identity, a.Path, Host(50)))
        {
            Assert.Equal(Host(50), first.Address);
            var error = Assert.Throws<AddressHeldException>(() => Registry().Acquire(b.Identity, b.Path, Host(50)));
            Assert.Equal(a.Path, error.Holder.StateDirectory);
            Assert.Equal(a.Path, Registry().FindRunningHolder(Host(50), b.Path)?.StateDirectory);
            Assert.Null(Registry().FindRunningHolder(Host(50), a.Path));
        }
        Assert.Null(Registry().FindRunningHolder(Host(50), b.Path));
        using var second = Registry().Acquire(b.Identity, b.Path, Host(50));
        Assert.Equal(Host(50), second.Address);
    }

    /// <summary>
    /// Found by fuzzing (fuzz/corpus/leases): null entries and fields, and addresses that are not, once escaped as
    /// NullReferenceException, ArgumentNullException, FormatException or InvalidOperationException. They are damage
    /// like any other: reported, naming the file, and rebuilt from the VMs' own records.
    /// </summary>
    [Theory]
    [InlineData("""{"leases":[null]}""")]
    [InlineData("""{"leases":[{"identity":"6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10"}]}""")]
    [InlineData("""{"leases":[{"identity":"6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10","address":"192.168.65.3"}]}""")]
    [InlineData("""{"leases":[{"identity":"6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10","address":null,"stateDirectory":"/x"}]}""")]
    [InlineData("""{"leases":[{"identity":"6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10","address":"192.168.65.3","stateDirectory":null}]}""")]
    [InlineData("""{"leases":[{"identity":"6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10","address":"192.168.65.300","stateDirectory":"/x"}]}""")]
    [InlineData("""{"leases":[{"identity":"6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10","address":[],"stateDirectory":"/x"}]}""")]
    public void A_lease_without_a_sound_address_or_state_dir_is_reported_as_damage_naming_the_file(string json)
    {
        Directory.CreateDirectory(RegistryPath);
        var file = Path.Combine(RegistryPath, LeaseRegistry.LeasesFileName);
        File.WriteAllText(file, json);
        var vm = Vm("a");

        Assert.Null(Registry().FindRunningHolder(Host(3), vm.Path));
        var registry = Registry();
        using var lease = registry.Acquire(vm.Identity, vm.Path, null);

        Assert.Contains(file, registry.Repaired);
        Assert.Equal(Host(3), lease.Address);
    }

    [Fact]
    public void Looking_up_a_holder_creates_no_registry()
    {
        Assert.Null(Registry().FindRunningHolder(Host(3), "/nowhere"));
        Assert.False(Directory.Exists(RegistryPath));
    }

    [Fact]
    public void The_registry_is_private_to_the_user()
    {
        var a = Vm("a");
        using var _ = Registry().Acquire(a.Identity, a.Path, null);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(RegistryPath));
    }

    [Fact]
    public void A_copy_of_a_running_state_dir_is_refused()
    {
        var a = Vm("a");
        using var first = Registry().Acquire(a.Identity, a.Path, null);
        var error = Assert.Throws<IdentityRunningException>(() => Registry().Acquire(a.Identity, a.Path + "-copy", null));
        Assert.Contains(a.Path, error.Message);
    }

    [Fact]
    public void Another_process_holding_the_running_lock_counts_as_running_until_it_dies()
    {
        var a = Vm("a");
        var b = Vm("b");
        Registry().Acquire(a.Identity, a.Path, null).Dispose();
        var runningLock = Path.Combine(RegistryPath, LeaseRegistry.RunningDirectoryName, $"{a.Identity}.lock");
        // The holder waits for the lock, since the probes below hold it for an instant each.
        using var holder = Process.Start(new ProcessStartInfo("flock", ["--close", runningLock, "sleep", "60"]))!;
        try
        {
            FileLocks.WaitUntil(() => !FileLocks.IsFree(runningLock), "flock to take the running lock");
            Assert.Throws<AddressHeldException>(() => Registry().Acquire(b.Identity, b.Path, Host(3)));
        }
        finally
        {
            holder.Kill(entireProcessTree: true);
            holder.WaitForExit();
        }
        FileLocks.WaitUntil(() => FileLocks.IsFree(runningLock), "the killed flock to release the running lock");
        using var lease = Registry().Acquire(b.Identity, b.Path, Host(3));
        Assert.Equal(Host(3), lease.Address);
    }

    [Fact]
    public async Task Lkruns_starting_together_never_share_an_address()
    {
        var vms = Enumerable.Range(0, 16).Select(i => Vm($"vm{i}")).ToList();
        using var start = new Barrier(vms.Count);
        var leases = vms
            .Select(vm => Task.Factory.StartNew(() =>
            {
                start.SignalAndWait();
                return new LeaseRegistry(RegistryPath).Acquire(vm.Identity, vm.Path, null);
            }, TestContext.Current.CancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default));
        var held = await Task.WhenAll(leases);
        try
        {
            var addresses = held.Select(lease => lease.Address).OrderBy(address => address.GetAddressBytes()[3]);
            Assert.Equal(Enumerable.Range(3, vms.Count).Select(Host), addresses);
        }
        finally
        {
            foreach (var lease in held)
            {
                lease.Dispose();
            }
        }
    }

    [Fact]
    public void A_damaged_registry_is_reported_and_rebuilt_with_every_vms_lease()
    {
        var a = Vm("a");
        var b = Vm("b");
        var c = Vm("c");
        using var runningA = Registry().Acquire(a.Identity, a.Path, null);
        Registry().Acquire(b.Identity, b.Path, Host(9)).Dispose();
        File.WriteAllText(Path.Combine(RegistryPath, LeaseRegistry.LeasesFileName), "{ \"leases\": [ { \"ident");

        var registry = Registry();
        using var leaseC = registry.Acquire(c.Identity, c.Path, null);
        Assert.Contains(Path.Combine(RegistryPath, LeaseRegistry.LeasesFileName), registry.Repaired);
        Assert.Contains("rebuilt it with the 2 leases", registry.Repaired);
        // a still runs at .3 and b keeps .9 for its next run, so c gets .4; b comes back to .9.
        Assert.Equal(Host(4), leaseC.Address);
        using var leaseB = Registry().Acquire(b.Identity, b.Path, null);
        Assert.Equal(Host(9), leaseB.Address);
        Assert.Null(Registry().Repaired);
    }

    [Fact]
    public void The_registry_follows_xdg_state_home()
    {
        Assert.Equal(Path.Combine("/some/state", "lkrun"), LeaseRegistry.ForHome("/some/state", "/home/u").Directory);
        Assert.Equal(Path.Combine("/home/u", ".local", "state", "lkrun"), LeaseRegistry.ForHome(null, "/home/u").Directory);
        Assert.Equal(Path.Combine("/home/u", ".local", "state", "lkrun"), LeaseRegistry.ForHome("relative/dir", "/home/u").Directory);
    }
}
