using System.Net;
using Lkrun.Spec;

namespace Lkrun.Spec.Tests;

public class VmSpecTests
{
    internal static VmSpec Sample() => new()
    {
        Name = "linuxkit",
        Boot = new KernelInitrdBoot("/img/linuxkit-kernel", "/img/linuxkit-initrd.img", "console=ttyS0"),
        Cpus = 2,
        MemoryMiB = 512,
        Disks = new([new DiskSpec("/state/disk.raw", 1024, DiskFormat.Raw), new DiskSpec("/data.qcow2", null, DiskFormat.Qcow2)]),
        Metadata = new InlineMetadata("hello"),
        Network = new NetworkSpec
        {
            FixedAddress = IPAddress.Parse("192.168.65.9"),
            PublishedPorts = new([new PublishedPort(IPAddress.Loopback, 2222, 22, PortProtocol.Tcp)]),
        },
        VsockPorts = new([2374u]),
        Console = ConsoleSpec.File,
        StateDirectory = "/state",
        StopTimeout = TimeSpan.FromSeconds(5),
        Engine = new QemuEngineSpec("/usr/bin/qemu-system-x86_64", "tcg"),
    };

    [Fact]
    public void Spec_round_trips_through_json()
    {
        var spec = Sample();
        var json = VmSpecJson.Serialize(spec);
        Assert.Equal(spec, VmSpecJson.Deserialize(json));
        Assert.Contains("\"kind\": \"kernel+initrd\"", json);
    }

    [Fact]
    public void Every_boot_source_round_trips_through_json()
    {
        BootSource[] sources =
        [
            new KernelSquashfsBoot("/k", "/s.img", "console=hvc0"),
            new IsoBoot("/x.iso", true, "/fw.fd"),
            new IsoBoot("/x.iso", false, null),
        ];
        foreach (var boot in sources)
        {
            var spec = Sample() with { Boot = boot, Engine = new VirtualizationFrameworkEngineSpec() };
            Assert.Equal(spec, VmSpecJson.Deserialize(VmSpecJson.Serialize(spec)));
        }
    }

    [Fact]
    public void Specs_with_different_lists_differ()
    {
        Assert.NotEqual(Sample(), Sample() with { VsockPorts = new([2375u]) });
        Assert.Equal(Sample(), Sample() with { VsockPorts = new([2374u]) });
    }
}
