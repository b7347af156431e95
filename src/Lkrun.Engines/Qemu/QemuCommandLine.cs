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
    public const string MachineType = "q35";
    private const string SharedMemoryId = "mem0";

    /// <summary>The kernel parameter that makes a kernel+squashfs guest mount its first disk as root.</summary>
    public const string SquashfsRootParameter = "root=/dev/vda";

    /// <summary>
    /// Builds the argv. <paramref name="firmware"/> is the EFI firmware with the VM's own variable store, for
    /// EFI boots only. Devices appear in the guest in the order they are added here: the squashfs root first,
    /// then the <c>-disk</c> disks in command-line order, then the metadata CD.
    /// </summary>
    public static IReadOnlyList<string> Build(VmSpec spec, VmAttachments attachments, QemuHost host, EfiFirmwareFiles? firmware = null)
    {
        var args = new List<string>();
        AddMachine(args, spec, attachments, host);
        AddCdController(args, spec, attachments);
        AddBoot(args, spec.Boot, attachments, firmware);
        AddDisks(args, spec);
        AddMetadata(args, attachments);
        AddConsoles(args, attachments);
        AddControl(args, attachments);
        AddNetwork(args, attachments);
        AddVsock(args, attachments);
        return args;
    }

    /// <summary>QEMU separates option values with commas; a comma inside a value is written twice.</summary>
    public static string Escape(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    private static void AddMachine(List<string> args, VmSpec spec, VmAttachments attachments, QemuHost host)
    {
        args.AddRange(
        [
            "-name", $"guest={Escape(spec.Name)}",
            "-nodefaults", "-no-user-config", "-display", "none",
            // A vhost-user device reads and writes guest RAM itself, so the RAM must be a shared memfd.
            .. attachments.VsockSocket is null
                ? (string[])["-machine", MachineType]
                : ["-object", $"memory-backend-memfd,id={SharedMemoryId},size={spec.MemoryMiB}M,share=on", "-machine", $"{MachineType},memory-backend={SharedMemoryId}"],
            "-accel", host.Accelerator,
            "-cpu", host.IsKvm ? "host" : "max",
            "-smp", spec.Cpus.ToString(CultureInfo.InvariantCulture),
            "-m", spec.MemoryMiB.ToString(CultureInfo.InvariantCulture),
            "-uuid", attachments.Uuid.ToString(),
            // A rebooting guest ends the run, as it does on Virtualization.framework.
            "-no-reboot",
            "-device", "virtio-rng-pci",
        ]);
    }

    private static void AddBoot(List<string> args, BootSource boot, VmAttachments attachments, EfiFirmwareFiles? firmware)
    {
        switch (boot)
        {
            case KernelInitrdBoot initrd:
                args.AddRange(["-kernel", attachments.Kernel ?? initrd.Kernel, "-initrd", initrd.Initrd, "-append", initrd.Cmdline]);
                break;
            case KernelSquashfsBoot squashfs:
                args.AddRange(["-kernel", attachments.Kernel ?? squashfs.Kernel, "-append", $"{squashfs.Cmdline} {SquashfsRootParameter}".Trim()]);
                args.AddRange(VirtioDisk("root", squashfs.Squashfs, "raw", readOnly: true));
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

    private static void AddDisks(List<string> args, VmSpec spec)
    {
        for (var i = 0; i < spec.Disks.Count; i++)
        {
            var disk = spec.Disks[i];
            args.AddRange(VirtioDisk($"disk{i}", disk.Path, disk.Format == DiskFormat.Qcow2 ? "qcow2" : "raw", readOnly: false));
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

    private static string[] VirtioDisk(string id, string path, string format, bool readOnly) =>
    [
        "-drive", $"if=none,id={id},file={Escape(path)},format={format}{(readOnly ? ",readonly=on" : "")}",
        "-device", $"virtio-blk-pci,drive={id}",
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

    private static void AddCdController(List<string> args, VmSpec spec, VmAttachments attachments)
    {
        if (spec.Boot is IsoBoot || attachments.MetadataIso is not null)
        {
            args.AddRange(["-device", $"virtio-scsi-pci,id={CdControllerId}"]);
        }
    }

    private static void AddConsoles(List<string> args, VmAttachments attachments)
    {
        args.AddRange(
        [
            "-chardev", $"socket,id=serial0,path={Escape(attachments.ConsoleSockets[0])}",
            "-serial", "chardev:serial0",
            "-device", "virtio-serial-pci,id=virtio-serial0",
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

    private static void AddVsock(List<string> args, VmAttachments attachments)
    {
        if (attachments.VsockSocket is { } socket)
        {
            args.AddRange(["-chardev", $"socket,id=vsock0,path={Escape(socket)}", "-device", "vhost-user-vsock-pci,chardev=vsock0"]);
        }
    }

    /// <summary>
    /// The network device, connected to lkrun's NAT network over the link the network set up: a stream socket lkrun
    /// listens on (<c>-netdev stream</c>, QEMU connecting, each frame preceded by its length), or a pair of datagram
    /// sockets (<c>-netdev dgram</c>, QEMU binding the device's path and sending each frame as one datagram to
    /// lkrun's). <c>host_mtu</c> hands the guest's driver the network's MTU, so the guest uses large frames from the
    /// start, whatever its DHCP client does with the MTU option.
    /// </summary>
    private static void AddNetwork(List<string> args, VmAttachments attachments)
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
        args.AddRange(["-netdev", netdev, "-device", $"virtio-net-pci,netdev=net0,mac={network.Mac},host_mtu={NatSubnet.Mtu}"]);
    }
}
