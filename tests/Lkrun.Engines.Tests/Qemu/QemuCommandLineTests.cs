using Lkrun.Engines.Qemu;
using Lkrun.Services.Boot;
using Lkrun.Services.Hosting;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Qemu;

public class QemuCommandLineTests
{
    private static readonly Guid Uuid = Guid.Parse("6f1e3c5a-0000-4000-8000-000000000001");

    internal static VmSpec Spec(BootSource? boot = null) => new()
    {
        Name = "demo",
        Boot = boot ?? new KernelInitrdBoot("/img/demo-kernel", "/img/demo-initrd.img", "console=ttyS0 quiet"),
        Cpus = 2,
        MemoryMiB = 512,
        StateDirectory = "/state",
        Engine = new QemuEngineSpec(null, null),
    };

    internal static VmAttachments Attachments() => new()
    {
        Uuid = Uuid,
        State = new StateLayout("/state"),
        ConsoleSockets = ["/state/ttyS0.sock", "/state/hvc0.sock"],
    };

    private static readonly QemuHost Tcg = new("/usr/bin/qemu-system-x86_64", "tcg");

    /// <summary>The value following each occurrence of <paramref name="option"/>.</summary>
    private static List<string> ValuesOf(IReadOnlyList<string> args, string option) =>
        args.Select((arg, i) => (arg, i)).Where(p => p.arg == option).Select(p => args[p.i + 1]).ToList();

    [Fact]
    public void Machine_follows_the_spec()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments(), Tcg, QemuMachine.Q35);
        Assert.Equal(["q35"], ValuesOf(args, "-machine"));
        Assert.Equal(["tcg"], ValuesOf(args, "-accel"));
        Assert.Equal(["max"], ValuesOf(args, "-cpu"));
        Assert.Equal(["2"], ValuesOf(args, "-smp"));
        Assert.Equal(["512"], ValuesOf(args, "-m"));
        Assert.Equal([Uuid.ToString()], ValuesOf(args, "-uuid"));
        Assert.Contains("-no-reboot", args);
        Assert.Contains("-nodefaults", args);
    }

    [Fact]
    public void Kvm_passes_the_host_cpu_through()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments(), Tcg with { Accelerator = "kvm" }, QemuMachine.Q35);
        Assert.Equal(["host"], ValuesOf(args, "-cpu"));
        Assert.Equal(["kvm"], ValuesOf(args, "-accel"));
    }

    [Fact]
    public void Kernel_initrd_boots_with_the_cmdline_as_is()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments(), Tcg, QemuMachine.Q35);
        Assert.Equal(["/img/demo-kernel"], ValuesOf(args, "-kernel"));
        Assert.Equal(["/img/demo-initrd.img"], ValuesOf(args, "-initrd"));
        Assert.Equal(["console=ttyS0 quiet"], ValuesOf(args, "-append"));
    }

    [Fact]
    public void An_inflated_kernel_replaces_the_image_kernel()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments() with { Kernel = BootKernel.AsIs("/state/kernel") }, Tcg, QemuMachine.Q35);
        Assert.Equal(["/state/kernel"], ValuesOf(args, "-kernel"));
    }

    [Fact]
    public void Both_consoles_and_qmp_connect_to_the_state_dir_sockets()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments(), Tcg, QemuMachine.Q35);
        Assert.Equal(
            ["socket,id=serial0,path=/state/ttyS0.sock", "socket,id=virtcon0,path=/state/hvc0.sock", "socket,id=qmp0,path=/state/qmp.sock"],
            ValuesOf(args, "-chardev"));
        Assert.Equal(["chardev:serial0"], ValuesOf(args, "-serial"));
        Assert.Contains("virtconsole,chardev=virtcon0,bus=virtio-serial0.0", ValuesOf(args, "-device"));
        Assert.Equal(["chardev=qmp0,mode=control"], ValuesOf(args, "-mon"));
    }

    [Fact]
    public void Commas_in_paths_are_doubled()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments() with { ConsoleSockets = ["/st,ate/ttyS0.sock", "/state/hvc0.sock"] }, Tcg, QemuMachine.Q35);
        Assert.Contains("socket,id=serial0,path=/st,,ate/ttyS0.sock", args);
    }

    [Fact]
    public void The_same_input_gives_the_same_argv()
    {
        Assert.Equal(QemuCommandLine.Build(Spec(), Attachments(), Tcg, QemuMachine.Q35), QemuCommandLine.Build(Spec(), Attachments(), Tcg, QemuMachine.Q35));
    }

    [Fact]
    public void Kernel_squashfs_boots_from_a_read_only_first_disk()
    {
        var spec = Spec(new KernelSquashfsBoot("/img/demo-kernel", "/img/demo-squashfs.img", "console=ttyS0"))
            with { Disks = new([new DiskSpec("/state/disk.raw", 64, DiskFormat.Raw)]) };
        var args = QemuCommandLine.Build(spec, Attachments(), Tcg, QemuMachine.Q35);
        Assert.Equal(["console=ttyS0 root=/dev/vda"], ValuesOf(args, "-append"));
        Assert.Empty(ValuesOf(args, "-initrd"));
        Assert.Equal(
            ["if=none,id=root,file=/img/demo-squashfs.img,format=raw,readonly=on", "if=none,id=disk0,file=/state/disk.raw,format=raw"],
            ValuesOf(args, "-drive"));
        var blockDevices = ValuesOf(args, "-device").Where(d => d.StartsWith("virtio-blk-pci", StringComparison.Ordinal)).ToList();
        Assert.Equal(["virtio-blk-pci,drive=root", "virtio-blk-pci,drive=disk0"], blockDevices);
    }

    [Fact]
    public void Disks_keep_command_line_order_and_format()
    {
        var spec = Spec() with
        {
            Disks = new([new DiskSpec("/a.raw", null, DiskFormat.Raw), new DiskSpec("/b.qcow2", 10, DiskFormat.Qcow2)]),
        };
        Assert.Equal(
            ["if=none,id=disk0,file=/a.raw,format=raw", "if=none,id=disk1,file=/b.qcow2,format=qcow2"],
            ValuesOf(QemuCommandLine.Build(spec, Attachments(), Tcg, QemuMachine.Q35), "-drive"));
    }

    [Fact]
    public void Metadata_is_a_cd_after_the_disks()
    {
        var spec = Spec() with { Disks = new([new DiskSpec("/a.raw", null, DiskFormat.Raw)]) };
        var args = QemuCommandLine.Build(spec, Attachments() with { MetadataIso = "/state/data.iso" }, Tcg, QemuMachine.Q35);
        var drives = ValuesOf(args, "-drive");
        Assert.Equal("if=none,id=cidata,file=/state/data.iso,format=raw,media=cdrom,readonly=on", drives[^1]);
        Assert.Contains("virtio-scsi-pci,id=scsi0", ValuesOf(args, "-device"));
        Assert.Contains("scsi-cd,drive=cidata,bus=scsi0.0,scsi-id=1", ValuesOf(args, "-device"));
    }

    [Fact]
    public void Without_cds_there_is_no_cd_controller()
    {
        Assert.DoesNotContain(ValuesOf(QemuCommandLine.Build(Spec(), Attachments(), Tcg, QemuMachine.Q35), "-device"), d => d.StartsWith("virtio-scsi", StringComparison.Ordinal));
    }

    [Fact]
    public void An_efi_iso_boots_through_split_firmware_with_the_vms_own_variables()
    {
        var args = QemuCommandLine.Build(Spec(new IsoBoot("/img/demo.iso", true, null)), Attachments(), Tcg, QemuMachine.Q35,
            new EfiFirmwareFiles("/usr/share/OVMF/OVMF_CODE_4M.fd", "/state/efi-vars.fd"));
        Assert.Equal(
            [
                "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "if=pflash,format=raw,file=/state/efi-vars.fd",
                "if=none,id=boot,file=/img/demo.iso,format=raw,media=cdrom,readonly=on",
            ],
            ValuesOf(args, "-drive"));
        Assert.Contains("scsi-cd,drive=boot,bus=scsi0.0,scsi-id=0,bootindex=0", ValuesOf(args, "-device"));
        Assert.Empty(ValuesOf(args, "-kernel"));
    }

    [Fact]
    public void A_single_file_firmware_is_loaded_as_the_bios()
    {
        var args = QemuCommandLine.Build(Spec(new IsoBoot("/img/demo.iso", true, "/fw/OVMF.fd")), Attachments(), Tcg, QemuMachine.Q35,
            new EfiFirmwareFiles("/fw/OVMF.fd", null));
        Assert.Equal(["/fw/OVMF.fd"], ValuesOf(args, "-bios"));
        Assert.DoesNotContain(ValuesOf(args, "-drive"), d => d.StartsWith("if=pflash", StringComparison.Ordinal));
    }

    [Fact]
    public void A_bios_iso_boots_from_the_cd_with_the_default_firmware()
    {
        var args = QemuCommandLine.Build(Spec(new IsoBoot("/img/demo.iso", false, null)), Attachments(), Tcg, QemuMachine.Q35);
        Assert.Empty(ValuesOf(args, "-bios"));
        Assert.Equal(["if=none,id=boot,file=/img/demo.iso,format=raw,media=cdrom,readonly=on"], ValuesOf(args, "-drive"));
    }
}
