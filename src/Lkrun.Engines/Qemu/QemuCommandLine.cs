using System.Globalization;
using Lkrun.Services.Hosting;
using Lkrun.Services.Network.Links;
using Lkrun.Spec;

namespace Lkrun.Engines.Qemu;

/// <summary>EFI firmware as QEMU loads it: the code, and the VM's own writable variable store when the firmware is split.</summary>
public sealed record EfiFirmwareFiles(string Code, string? VariableStore);

/// <summary>
/// Translates a VM spec and its host attachments into QEMU's argv. Pure: the same input gives the same output,
/// and nothing on the host is touched.
/// </summary>
public static class QemuCommandLine
{
    private const string SharedMemoryId = "mem0";

    /// <summary>The kernel parameter that makes a kernel+squashfs guest mount its first disk as root.</summary>
    public const string SquashfsRootParameter = "root=/dev/vda";

    /// <summary>
    /// Builds the argv for <paramref name="machine"/>. <paramref name="firmware"/> is the EFI firmware with the
    /// VM's own variable store, for EFI boots only. Devices appear in the guest in the order they are added here:
    /// the squashfs root first, then the <c>-disk</c> disks in command-line order, then the metadata CD.
    /// </summary>
    public static IReadOnlyList<string> Build(VmSpec spec, VmAttachments attachments, QemuHost host, QemuMachine machine, EfiFirmwareFiles? firmware = null)
    {
        var args = new List<string>();
        var virtio = new VirtioTransports(machine);
        AddMachine(args, spec, attachments, host, machine, virtio);
        AddCdController(args, spec, attachments, virtio);
        AddBoot(args, spec.Boot, attachments, firmware, virtio, KernelParameters(machine, host));
        AddDisks(args, spec, virtio);
        AddMetadata(args, attachments);
        AddConsoles(args, attachments, virtio);
        AddControl(args, attachments);
        AddNetwork(args, attachments, virtio);
        AddVsock(args, attachments, virtio);
        AddSharedDirectories(args, attachments, virtio);
        return args;
    }

    /// <summary>The most virtio devices a microvm VM can have: one per transport of its second IO-APIC.</summary>
    public const int MicrovmTransports = 24;

    /// <summary>
    /// Names virtio devices for the machine's transport: PCI functions on q35; on microvm, virtio-mmio transports
    /// from the last one down, since QEMU lists the transports in its DSDT, and the guest probes them, from the
    /// highest address down: the guest then finds the devices in the order they are added, as it does on PCI.
    /// </summary>
    private sealed class VirtioTransports(QemuMachine machine)
    {
        private int _next = MicrovmTransports - 1;

        public string Device(string kind, string properties)
        {
            if (machine == QemuMachine.Q35)
            {
                return properties.Length == 0 ? $"{kind}-pci" : $"{kind}-pci,{properties}";
            }
            if (_next < 0)
            {
                throw new EngineException($"microvm has {MicrovmTransports} virtio transports, fewer than this VM's devices; use -machine q35");
            }
            var bus = $"bus=virtio-mmio-bus.{_next--}";
            return properties.Length == 0 ? $"{kind}-device,{bus}" : $"{kind}-device,{properties},{bus}";
        }
    }

    /// <summary>QEMU separates option values with commas; a comma inside a value is written twice.</summary>
    public static string Escape(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    /// <summary>
    /// microvm with ACPI: its generic event device carries the power button, and the virtio-mmio devices are
    /// described in its DSDT (QEMU adds them to the kernel command line only without ACPI).
    /// </summary>
    private const string MicrovmType = "microvm,acpi=on";

    private static void AddMachine(List<string> args, VmSpec spec, VmAttachments attachments, QemuHost host, QemuMachine machine, VirtioTransports virtio)
    {
        var type = machine == QemuMachine.Microvm ? MicrovmType : "q35";
        args.AddRange(
        [
            "-name", $"guest={Escape(spec.Name)}",
            "-nodefaults", "-no-user-config", "-display", "none",
            // A vhost-user device reads and writes guest RAM itself, so the RAM must be a shared memfd.
            .. attachments.VsockSocket is null && attachments.SharedDirectories.Count == 0
                ? (string[])["-machine", type]
                : ["-object", $"memory-backend-memfd,id={SharedMemoryId},size={spec.MemoryMiB}M,share=on", "-machine", $"{type},memory-backend={SharedMemoryId}"],
            "-accel", host.Accelerator,
            "-cpu", host.IsKvm ? "host" : "max",
            "-smp", spec.Cpus.ToString(CultureInfo.InvariantCulture),
            "-m", spec.MemoryMiB.ToString(CultureInfo.InvariantCulture),
            "-uuid", attachments.Uuid.ToString(),
            // A rebooting guest ends the run, as it does on Virtualization.framework.
            "-no-reboot",
            .. machine == QemuMachine.Microvm ? (string[])["-global", MicrovmModernTransports] : [],
            "-device", virtio.Device("virtio-rng", ""),
        ]);
    }

    /// <summary>
    /// microvm's virtio-mmio transports as virtio 1.0 devices (version 2), as virtio-pci's are on q35: QEMU makes them
    /// legacy by default, and libvhost-user backends such as virtiofsd refuse legacy devices. Linux drives version 2
    /// since 4.0.
    /// </summary>
    private const string MicrovmModernTransports = "virtio-mmio.force-legacy=false";

    /// <summary>
    /// What the machine adds to the kernel command line: on microvm under TCG, the host's TSC frequency, and that
    /// the TSC can be trusted (it is the host's constant TSC), since the guest has no timer to measure it against.
    /// </summary>
    private static string KernelParameters(QemuMachine machine, QemuHost host) =>
        machine == QemuMachine.Microvm && !host.IsKvm && host.TscKhz is { } khz
            ? $"tsc_early_khz={khz.ToString(CultureInfo.InvariantCulture)} tsc=reliable"
            : "";

    private static string JoinParameters(params string[] parts) => string.Join(' ', parts.Where(part => part.Length > 0));

    private static void AddBoot(List<string> args, BootSource boot, VmAttachments attachments, EfiFirmwareFiles? firmware, VirtioTransports virtio, string kernelParameters)
    {
        switch (boot)
        {
            case KernelInitrdBoot initrd:
                args.AddRange(["-kernel", attachments.Kernel?.Path ?? initrd.Kernel, "-initrd", initrd.Initrd, "-append", JoinParameters(initrd.Cmdline, kernelParameters)]);
                break;
            case KernelSquashfsBoot squashfs:
                args.AddRange(["-kernel", attachments.Kernel?.Path ?? squashfs.Kernel, "-append", JoinParameters(squashfs.Cmdline.Trim(), SquashfsRootParameter, kernelParameters)]);
                args.AddRange(VirtioDisk(virtio, "root", squashfs.Squashfs, "raw", readOnly: true));
                break;
            case IsoBoot iso:
                if (iso.Uefi)
                {
                    var files = firmware ?? throw new ArgumentException("an EFI boot needs firmware", nameof(firmware));
                    if (files.VariableStore is null)
                    {
                        args.AddRange(["-bios", files.Code]);
                    }
                    else
                    {
                        args.AddRange(["-drive", $"if=pflash,format=raw,readonly=on,file={Escape(files.Code)}"]);
                        args.AddRange(["-drive", $"if=pflash,format=raw,file={Escape(files.VariableStore)}"]);
                    }
                }
                args.AddRange(CdRom("boot", iso.Iso, scsiId: 0, bootIndex: 0));
                break;
            default:
                throw new EngineException($"the qemu backend cannot boot {boot.GetType().Name}");
        }
    }

    private static void AddDisks(List<string> args, VmSpec spec, VirtioTransports virtio)
    {
        for (var i = 0; i < spec.Disks.Count; i++)
        {
            var disk = spec.Disks[i];
            args.AddRange(VirtioDisk(virtio, $"disk{i}", disk.Path, disk.Format == DiskFormat.Qcow2 ? "qcow2" : "raw", readOnly: false));
        }
    }

    private static void AddMetadata(List<string> args, VmAttachments attachments)
    {
        if (attachments.MetadataIso is { } iso)
        {
            // The boot ISO, when there is one, is the CD with SCSI id 0.
            args.AddRange(CdRom("cidata", iso, scsiId: 1));
        }
    }

    private static string[] VirtioDisk(VirtioTransports virtio, string id, string path, string format, bool readOnly) =>
    [
        "-drive", $"if=none,id={id},file={Escape(path)},format={format}{(readOnly ? ",readonly=on" : "")}",
        "-device", virtio.Device("virtio-blk", $"drive={id}"),
    ];

    /// <summary>
    /// A CD-ROM on a virtio-scsi controller, which the guest sees as /dev/srN. virtio-scsi rather than q35's AHCI,
    /// because cloud kernels (Debian's among them) leave AHCI out; SeaBIOS and OVMF both boot from it.
    /// </summary>
    private static string[] CdRom(string id, string path, int scsiId, int? bootIndex = null) =>
    [
        "-drive", $"if=none,id={id},file={Escape(path)},format=raw,media=cdrom,readonly=on",
        "-device", $"scsi-cd,drive={id},bus={CdControllerId}.0,scsi-id={scsiId}{(bootIndex is null ? "" : $",bootindex={bootIndex}")}",
    ];

    private const string CdControllerId = "scsi0";

    private static void AddCdController(List<string> args, VmSpec spec, VmAttachments attachments, VirtioTransports virtio)
    {
        if (spec.Boot is IsoBoot || attachments.MetadataIso is not null)
        {
            args.AddRange(["-device", virtio.Device("virtio-scsi", $"id={CdControllerId}")]);
        }
    }

    private static void AddConsoles(List<string> args, VmAttachments attachments, VirtioTransports virtio)
    {
        args.AddRange(
        [
            // The serial port is an ISA 16550 on both machines: the guest's ttyS0.
            "-chardev", $"socket,id=serial0,path={Escape(attachments.ConsoleSockets[0])}",
            "-serial", "chardev:serial0",
            "-device", virtio.Device("virtio-serial", "id=virtio-serial0"),
            "-chardev", $"socket,id=virtcon0,path={Escape(attachments.ConsoleSockets[1])}",
            "-device", "virtconsole,chardev=virtcon0,bus=virtio-serial0.0",
        ]);
    }

    private static void AddControl(List<string> args, VmAttachments attachments)
    {
        args.AddRange(
        [
            "-chardev", $"socket,id=qmp0,path={Escape(attachments.State.QmpSocket)}",
            "-mon", "chardev=qmp0,mode=control",
            "-pidfile", attachments.State.QemuPid,
        ]);
    }

    private static void AddVsock(List<string> args, VmAttachments attachments, VirtioTransports virtio)
    {
        if (attachments.VsockSocket is { } socket)
        {
            args.AddRange(["-chardev", $"socket,id=vsock0,path={Escape(socket)}", "-device", virtio.Device("vhost-user-vsock", "chardev=vsock0")]);
        }
    }

    /// <summary>
    /// One virtio-fs device per <c>-virtiofs</c> share, served by the share's virtiofsd over vhost-user; the guest
    /// mounts it by its tag (<c>mount -t virtiofs TAG DIR</c>).
    /// </summary>
    private static void AddSharedDirectories(List<string> args, VmAttachments attachments, VirtioTransports virtio)
    {
        for (var i = 0; i < attachments.SharedDirectories.Count; i++)
        {
            var share = attachments.SharedDirectories[i];
            args.AddRange(
            [
                "-chardev", $"socket,id=fs{i},path={Escape(share.Socket)}",
                "-device", virtio.Device("vhost-user-fs", $"chardev=fs{i},tag={Escape(share.Tag)}"),
            ]);
        }
    }

    /// <summary>
    /// The network device, connected to lkrun's NAT network over the link the network set up: a stream socket lkrun
    /// listens on (<c>-netdev stream</c>, QEMU connecting, each frame preceded by its length), or a pair of datagram
    /// sockets (<c>-netdev dgram</c>, QEMU binding the device's path and sending each frame as one datagram to
    /// lkrun's). <c>host_mtu</c> hands the guest's driver the network's MTU, so the guest uses large frames from the
    /// start, whatever its DHCP client does with the MTU option.
    /// </summary>
    private static void AddNetwork(List<string> args, VmAttachments attachments, VirtioTransports virtio)
    {
        if (attachments.Network is not { } network)
        {
            return;
        }
        var netdev = network.Link switch
        {
            StreamLinkEndpoint stream => $"stream,id=net0,server=off,addr.type=unix,addr.path={Escape(stream.Path)}",
            DatagramPathsEndpoint datagram =>
                $"dgram,id=net0,local.type=unix,local.path={Escape(datagram.DevicePath)},remote.type=unix,remote.path={Escape(datagram.Path)}",
            var other => throw new EngineException($"the qemu backend cannot attach a network link of the kind {other.GetType().Name}"),
        };
        args.AddRange(["-netdev", netdev, "-device", virtio.Device("virtio-net", $"netdev=net0,mac={network.Mac},host_mtu={NatSubnet.Mtu}")]);
    }
}
