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
        SharedDirectories = new([new SharedDirectorySpec("/srv/share", "virtiofs0", false), new SharedDirectorySpec("/srv/ro", "logs", true)]),
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
    public void Shared_directories_and_vznat_round_trip_through_json()
    {
        var spec = Sample() with
        {
            Network = new NetworkSpec { Mode = NetworkMode.VzNat },
            Engine = new VirtualizationFrameworkEngineSpec(),
        };
        var json = VmSpecJson.Serialize(spec);
        Assert.Equal(spec, VmSpecJson.Deserialize(json));
        Assert.Contains("\"mode\": \"vznat\"", json);
        Assert.Contains("\"tag\": \"logs\"", json);
    }

    [Fact]
    public void Machine_and_kernel_entry_round_trip_through_json_by_their_flag_names()
    {
        var spec = Sample() with { Engine = new QemuEngineSpec(null, null, QemuMachineType.Microvm, KernelEntry.BzImage) };
        var json = VmSpecJson.Serialize(spec);
        Assert.Equal(spec, VmSpecJson.Deserialize(json));
        Assert.Contains("\"machine\": \"microvm\"", json);
        Assert.Contains("\"kernelEntry\": \"bzimage\"", json);
    }

    [Fact]
    public void Specs_with_different_lists_differ()
    {
        Assert.NotEqual(Sample(), Sample() with { SharedDirectories = new([new SharedDirectorySpec("/srv/share", "virtiofs0", true)]) });
        Assert.NotEqual(Sample(), Sample() with { VsockPorts = new([2375u]) });
        Assert.Equal(Sample(), Sample() with { VsockPorts = new([2374u]) });
    }
}
