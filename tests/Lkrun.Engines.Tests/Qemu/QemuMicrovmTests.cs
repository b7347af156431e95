using System.Net;
using Lkrun.Engines.Qemu;
using Lkrun.Services.Boot;
using Lkrun.Services.Hosting;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Qemu;

public sealed class QemuMicrovmTests
{
    private static readonly QemuHost Tcg = new("/usr/bin/qemu-system-x86_64", "tcg", TscKhz: 2_445_432);
    private static readonly QemuHost Kvm = new("/usr/bin/qemu-system-x86_64", "kvm");

    private static VmSpec FullSpec() => QemuCommandLineTests.Spec(new KernelSquashfsBoot("/img/demo-kernel", "/img/demo-squashfs.img", "console=ttyS0"))
        with { Disks = new([new DiskSpec("/a.raw", null, DiskFormat.Raw), new DiskSpec("/b.raw", null, DiskFormat.Raw)]) };

    /// <summary>Every device lkrun has: metadata CD, network, vsock, squashfs root and two disks.</summary>
    private static VmAttachments FullAttachments() => QemuCommandLineTests.Attachments() with
    {
        Kernel = new BootKernel("/cache/k.vmlinux", IsPvhElf: true, VirtioMmio: true),
        MetadataIso = "/state/data.iso",
        VsockSocket = "/state/vsock.sock",
        Network = new GuestNetwork(NetworkMode.Vmnet, MacAddress.FromBytes([0x02, 0, 0, 0, 0, 0x01]), IPAddress.Parse("192.168.65.3"), new([]), new StreamLinkEndpoint("/state/net.sock")),
    };

    private static List<string> ValuesOf(IReadOnlyList<string> args, string option) =>
        args.Select((arg, i) => (arg, i)).Where(p => p.arg == option).Select(p => args[p.i + 1]).ToList();

    [Fact]
    public void Every_device_is_on_a_virtio_mmio_transport_from_the_last_one_down_in_the_order_of_q35()
    {
        var q35 = ValuesOf(QemuCommandLine.Build(FullSpec(), FullAttachments(), Tcg, QemuMachine.Q35), "-device");
        var microvm = ValuesOf(QemuCommandLine.Build(FullSpec(), FullAttachments(), Tcg, QemuMachine.Microvm), "-device");
        Assert.Equal(
            [
                "virtio-rng-device,bus=virtio-mmio-bus.23",
                "virtio-scsi-device,id=scsi0,bus=virtio-mmio-bus.22",
                "virtio-blk-device,drive=root,bus=virtio-mmio-bus.21",
                "virtio-blk-device,drive=disk0,bus=virtio-mmio-bus.20",
                "virtio-blk-device,drive=disk1,bus=virtio-mmio-bus.19",
                "scsi-cd,drive=cidata,bus=scsi0.0,scsi-id=1",
                "virtio-serial-device,id=virtio-serial0,bus=virtio-mmio-bus.18",
                "virtconsole,chardev=virtcon0,bus=virtio-serial0.0",
                "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01,host_mtu=65520,bus=virtio-mmio-bus.17",
                "vhost-user-vsock-device,chardev=vsock0,bus=virtio-mmio-bus.16",
            ],
            microvm);
        // The same devices in the same order, but for the transport.
        Assert.Equal(
            q35.Select(device => device.Replace("-pci", "", StringComparison.Ordinal)),
            microvm.Select(device => System.Text.RegularExpressions.Regex.Replace(device.Replace("-device", "", StringComparison.Ordinal), ",bus=virtio-mmio-bus\\.\\d+", "")));
    }

    [Fact]
    public void Microvm_has_acpi_for_the_power_button_and_shares_its_ram_with_the_vsock_device()
    {
        var args = QemuCommandLine.Build(FullSpec(), FullAttachments(), Tcg, QemuMachine.Microvm);
        Assert.Equal(["microvm,acpi=on,memory-backend=mem0"], ValuesOf(args, "-machine"));
        Assert.Equal(["memory-backend-memfd,id=mem0,size=512M,share=on"], ValuesOf(args, "-object"));
        Assert.Equal(["/cache/k.vmlinux"], ValuesOf(args, "-kernel"));
        Assert.Equal(["chardev:serial0"], ValuesOf(args, "-serial"));
    }

    [Fact]
    public void Microvm_devices_are_virtio_1_0_as_on_q35()
    {
        Assert.Equal(["virtio-mmio.force-legacy=false"], ValuesOf(QemuCommandLine.Build(FullSpec(), FullAttachments(), Tcg, QemuMachine.Microvm), "-global"));
        Assert.Empty(ValuesOf(QemuCommandLine.Build(FullSpec(), FullAttachments(), Tcg, QemuMachine.Q35), "-global"));
    }

    [Fact]
    public void Without_vsock_microvm_keeps_its_own_ram()
    {
        var args = QemuCommandLine.Build(QemuCommandLineTests.Spec(), QemuCommandLineTests.Attachments(), Tcg, QemuMachine.Microvm);
        Assert.Equal(["microvm,acpi=on"], ValuesOf(args, "-machine"));
        Assert.Empty(ValuesOf(args, "-object"));
    }

    [Fact]
    public void Under_tcg_a_microvm_guest_is_told_the_host_tsc_frequency()
    {
        var args = QemuCommandLine.Build(FullSpec(), FullAttachments(), Tcg, QemuMachine.Microvm);
        Assert.Equal(["console=ttyS0 root=/dev/vda tsc_early_khz=2445432 tsc=reliable"], ValuesOf(args, "-append"));
        var initrd = QemuCommandLine.Build(QemuCommandLineTests.Spec(), QemuCommandLineTests.Attachments(), Tcg, QemuMachine.Microvm);
        Assert.Equal(["console=ttyS0 quiet tsc_early_khz=2445432 tsc=reliable"], ValuesOf(initrd, "-append"));
    }

    [Fact]
    public void Kvm_and_q35_guests_find_their_clocks_themselves()
    {
        Assert.Equal(["console=ttyS0 root=/dev/vda"], ValuesOf(QemuCommandLine.Build(FullSpec(), FullAttachments(), Kvm, QemuMachine.Microvm), "-append"));
        Assert.Equal(["console=ttyS0 root=/dev/vda"], ValuesOf(QemuCommandLine.Build(FullSpec(), FullAttachments(), Tcg, QemuMachine.Q35), "-append"));
    }

    [Fact]
    public void More_devices_than_transports_is_an_error_naming_q35()
    {
        var spec = FullSpec() with { Disks = new(Enumerable.Range(0, 20).Select(i => new DiskSpec($"/d{i}.raw", null, DiskFormat.Raw))) };
        var error = Assert.Throws<EngineException>(() => QemuCommandLine.Build(spec, FullAttachments(), Tcg, QemuMachine.Microvm));
        Assert.Contains("-machine q35", error.Message);
    }

    private static VmSpec WithMachine(VmSpec spec, QemuMachineType machine) => spec with { Engine = new QemuEngineSpec(null, null, machine) };

    private static readonly BootKernel PvhMmio = new("/k", IsPvhElf: true, VirtioMmio: true);

    public static TheoryData<string, QemuMachineType, BootKernel?, bool, QemuMachine> Choices => new()
    {
        { "a PVH kernel with virtio-mmio", QemuMachineType.Auto, PvhMmio, true, QemuMachine.Microvm },
        { "a PVH kernel without virtio-mmio", QemuMachineType.Auto, PvhMmio with { VirtioMmio = false }, true, QemuMachine.Q35 },
        { "a bzImage", QemuMachineType.Auto, BootKernel.AsIs("/k"), true, QemuMachine.Q35 },
        { "no kernel facts", QemuMachineType.Auto, null, true, QemuMachine.Q35 },
        { "an unknown TSC under TCG", QemuMachineType.Auto, PvhMmio, false, QemuMachine.Q35 },
        { "q35 asked for", QemuMachineType.Q35, PvhMmio, true, QemuMachine.Q35 },
        { "microvm asked for", QemuMachineType.Microvm, BootKernel.AsIs("/k"), false, QemuMachine.Microvm },
    };

    [Theory]
    [MemberData(nameof(Choices))]
    public void The_machine_follows_the_flag_then_the_kernel(string what, QemuMachineType requested, BootKernel? kernel, bool tscKnown, QemuMachine expected)
    {
        var host = tscKnown ? Tcg : Tcg with { TscKhz = null };
        Assert.True(expected == QemuMachineSelection.Choose(WithMachine(QemuCommandLineTests.Spec(), requested), kernel, host), what);
    }

    [Fact]
    public void Microvm_asked_for_under_tcg_without_the_tsc_frequency_is_refused()
    {
        var spec = WithMachine(QemuCommandLineTests.Spec(), QemuMachineType.Microvm);
        var error = Assert.Throws<EngineException>(() => QemuMachineSelection.CheckHost(spec, Tcg with { TscKhz = null }));
        Assert.StartsWith("-machine microvm: under TCG", error.Message);
        Assert.Equal(2, error.ExitCode);
        QemuMachineSelection.CheckHost(spec, Tcg);
        QemuMachineSelection.CheckHost(spec, Kvm);
        QemuMachineSelection.CheckHost(WithMachine(QemuCommandLineTests.Spec(), QemuMachineType.Auto), Tcg with { TscKhz = null });
    }

    [Fact]
    public void Kvm_needs_no_tsc_frequency_for_microvm()
    {
        Assert.Equal(QemuMachine.Microvm, QemuMachineSelection.Choose(QemuCommandLineTests.Spec(), PvhMmio, Kvm));
    }

    [Fact]
    public void Isos_and_many_disks_stay_on_q35()
    {
        Assert.Equal(QemuMachine.Q35, QemuMachineSelection.Choose(QemuCommandLineTests.Spec(new IsoBoot("/x.iso", true, null)), null, Kvm));
        var disks = QemuCommandLineTests.Spec() with
        {
            Disks = new(Enumerable.Range(0, QemuMachineSelection.MicrovmDiskLimit + 1).Select(i => new DiskSpec($"/d{i}.raw", null, DiskFormat.Raw))),
        };
        Assert.Equal(QemuMachine.Q35, QemuMachineSelection.Choose(disks, PvhMmio, Kvm));
    }
}
