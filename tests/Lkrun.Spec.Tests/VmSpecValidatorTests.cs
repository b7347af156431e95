using System.Net;
using Lkrun.Spec;

namespace Lkrun.Spec.Tests;

public class VmSpecValidatorTests
{
    private static VmSpec Valid() => VmSpecTests.Sample() with
    {
        Disks = new([new DiskSpec("/state/disk.raw", 1024, DiskFormat.Raw)]),
        Metadata = null,
        SharedDirectories = new([new SharedDirectorySpec(Share, "virtiofs0", false)]),
    };

    /// <summary>A directory every test host has.</summary>
    private static readonly string Share = Path.GetTempPath();

    private static VmSpec WithShares(VmSpec spec, params SharedDirectorySpec[] shares) => spec with { SharedDirectories = new(shares) };

    [Fact]
    public void A_valid_spec_passes() => VmSpecValidator.Validate(Valid());

    public static TheoryData<string, Func<VmSpec, VmSpec>> Invalid => new()
    {
        { "-cpus 0", s => s with { Cpus = 0 } },
        { "-mem 16", s => s with { MemoryMiB = 16 } },
        { "-stop-timeout", s => s with { StopTimeout = TimeSpan.Zero } },
        { "-ip 192.168.65.1: ", s => s with { Network = s.Network with { FixedAddress = IPAddress.Parse("192.168.65.1") } } },
        { "-ip 192.168.65.2: ", s => s with { Network = s.Network with { FixedAddress = IPAddress.Parse("192.168.65.2") } } },
        { "-ip 192.168.65.0: ", s => s with { Network = s.Network with { FixedAddress = IPAddress.Parse("192.168.65.0") } } },
        { "-ip 192.168.65.255: ", s => s with { Network = s.Network with { FixedAddress = IPAddress.Parse("192.168.65.255") } } },
        { "-ip 192.168.65.254: ", s => s with { Network = s.Network with { FixedAddress = IPAddress.Parse("192.168.65.254") } } },
        { "-ip 10.0.0.3: ", s => s with { Network = s.Network with { FixedAddress = IPAddress.Parse("10.0.0.3") } } },
        { "-publish", s => s with { Network = s.Network with { Mode = NetworkMode.None, FixedAddress = null } } },
        { "-ip", s => s with { Network = new NetworkSpec { Mode = NetworkMode.None, FixedAddress = IPAddress.Parse("192.168.65.9") } } },
        { "-publish 127.0.0.1:2222:23/tcp: published twice", s => s with { Network = s.Network with { PublishedPorts = new([.. s.Network.PublishedPorts, new PublishedPort(IPAddress.Loopback, 2222, 23, PortProtocol.Tcp)]) } } },
        { "-vsock-ports 2374: given twice", s => s with { VsockPorts = new([2374u, 2374u]) } },
        { "-disk /state/disk.raw: the same file", s => s with { Disks = new([.. s.Disks, .. s.Disks]) } },
        { "-disk /nonexistent/disk.img: no such file", s => s with { Disks = new([new DiskSpec("/nonexistent/disk.img", null, DiskFormat.Raw)]) } },
        { "-fw /nonexistent.fd", s => s with { Boot = new IsoBoot("/x.iso", true, "/nonexistent.fd") } },
        { "-virtiofs /nonexistent: no such directory", s => WithShares(s, new SharedDirectorySpec("/nonexistent", "a", false)) },
        { $"-virtiofs {Share}: tag 'a' is used twice", s => WithShares(s, new SharedDirectorySpec(Share, "a", false), new SharedDirectorySpec(Share, "a", true)) },
        { "tag '' is empty", s => WithShares(s, new SharedDirectorySpec(Share, "", false)) },
        { "is longer than 35 bytes", s => WithShares(s, new SharedDirectorySpec(Share, new string('t', 36), false)) },
        { "is longer than 35 bytes", s => WithShares(s, new SharedDirectorySpec(Share, new string('\u00e9', 18), false)) },
        { "has a blank", s => WithShares(s, new SharedDirectorySpec(Share, "my share", false)) },
        { "-networking vznat: Apple's NAT needs the virtualization.framework backend", s => s with { Network = new NetworkSpec { Mode = NetworkMode.VzNat } } },
        { "-publish 127.0.0.1:2222:22/tcp: not available with -networking vznat", s => s with { Network = s.Network with { Mode = NetworkMode.VzNat }, Engine = new VirtualizationFrameworkEngineSpec() } },
        { "-ip 192.168.65.9: not available with -networking vznat", s => s with { Network = new NetworkSpec { Mode = NetworkMode.VzNat, FixedAddress = IPAddress.Parse("192.168.65.9") }, Engine = new VirtualizationFrameworkEngineSpec() } },
        { "-machine microvm: boots kernels only", s => s with { Boot = new IsoBoot("/x.iso", false, null), Engine = new QemuEngineSpec(null, null, QemuMachineType.Microvm) } },
        { "-kernel-entry pvh: applies to kernel boots only", s => s with { Boot = new IsoBoot("/x.iso", false, null), Engine = new QemuEngineSpec(null, null, KernelEntry: KernelEntry.Pvh) } },
        { "-kernel-entry bzimage: applies to kernel boots only", s => s with { Boot = new IsoBoot("/x.iso", true, null), Engine = new QemuEngineSpec(null, null, KernelEntry: KernelEntry.BzImage) } },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Invalid_specs_are_refused_naming_the_flag(string expected, Func<VmSpec, VmSpec> change)
    {
        var error = Assert.Throws<SpecException>(() => VmSpecValidator.Validate(change(Valid())));
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Theory]
    [InlineData(QemuMachineType.Q35, KernelEntry.Auto)]
    [InlineData(QemuMachineType.Auto, KernelEntry.Auto)]
    public void An_iso_takes_q35_or_auto_and_the_automatic_kernel_entry(QemuMachineType machine, KernelEntry entry)
    {
        VmSpecValidator.Validate(Valid() with { Boot = new IsoBoot("/x.iso", false, null), Engine = new QemuEngineSpec(null, null, machine, entry) });
    }

    [Fact]
    public void A_kernel_boot_takes_any_machine_and_entry()
    {
        foreach (var machine in Enum.GetValues<QemuMachineType>())
        {
            foreach (var entry in Enum.GetValues<KernelEntry>())
            {
                VmSpecValidator.Validate(Valid() with { Engine = new QemuEngineSpec(null, null, machine, entry) });
            }
        }
    }

    [Fact]
    public void Shares_may_use_the_longest_tag_and_vznat_runs_on_virtualization_framework()
    {
        VmSpecValidator.Validate(WithShares(Valid(), new SharedDirectorySpec(Share, new string('t', 35), true)));
        VmSpecValidator.Validate(Valid() with { Network = new NetworkSpec { Mode = NetworkMode.VzNat }, Engine = new VirtualizationFrameworkEngineSpec() });
    }

    [Fact]
    public void A_fixed_address_inside_the_lease_range_is_accepted()
    {
        VmSpecValidator.Validate(Valid() with { Network = new NetworkSpec { FixedAddress = IPAddress.Parse("192.168.65.3") } });
        VmSpecValidator.Validate(Valid() with { Network = new NetworkSpec { FixedAddress = IPAddress.Parse("192.168.65.253") } });
    }
}
