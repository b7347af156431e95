using System.Net;
using Lkrun.Spec;

namespace Lkrun.Spec.Tests;

public class VmSpecValidatorTests
{
    private static VmSpec Valid() => VmSpecTests.Sample() with
    {
        Disks = new([new DiskSpec("/state/disk.raw", 1024, DiskFormat.Raw)]),
        Metadata = null,
    };

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
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Invalid_specs_are_refused_naming_the_flag(string expected, Func<VmSpec, VmSpec> change)
    {
        var error = Assert.Throws<SpecException>(() => VmSpecValidator.Validate(change(Valid())));
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void A_fixed_address_inside_the_lease_range_is_accepted()
    {
        VmSpecValidator.Validate(Valid() with { Network = new NetworkSpec { FixedAddress = IPAddress.Parse("192.168.65.3") } });
        VmSpecValidator.Validate(Valid() with { Network = new NetworkSpec { FixedAddress = IPAddress.Parse("192.168.65.253") } });
    }
}
