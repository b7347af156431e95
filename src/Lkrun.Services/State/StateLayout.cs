using System.Globalization;

namespace Lkrun.Services.State;

/// <summary>
/// Every file lkrun keeps in a VM's state dir, by name: the one place that says what the README's state-dir table
/// lists. Identity and data persist across runs; the sockets and pid files exist while the VM runs.
/// </summary>
public sealed class StateLayout(string directory)
{
    public const string UuidName = "vpnkit.uuid";
    public const string SpecName = "vm.json";
    public const string MetadataIsoName = "data.iso";
    public const string EfiVariablesName = "efi-vars.fd";

    /// <summary>
    /// Virtualization.framework's EFI variable store. Not QEMU's <see cref="EfiVariablesName"/>: the two firmwares keep
    /// different formats, so one state dir can boot on either backend.
    /// </summary>
    public const string EfiVariableStoreName = "efi-variable-store";

    /// <summary>Virtualization.framework's <c>VZGenericMachineIdentifier</c> of the VM (macOS 13 and newer).</summary>
    public const string MachineIdentifierName = "machine-identifier";
    public const string MacName = "mac";
    public const string AddressName = "ip";
    public const string ConsoleLogName = "console.log";
    public const string LkrunLogName = "lkrun.log";
    public const string LastRunName = "last-run.json";
    public const string QemuLogName = "qemu.log";
    public const string LockName = "lkrun.lock";
    public const string LkrunPidName = "lkrun.pid";
    public const string QemuPidName = "qemu.pid";
    public const string QmpSocketName = "qmp.sock";
    public const string SerialConsoleSocketName = "ttyS0.sock";
    public const string VirtioConsoleSocketName = "hvc0.sock";
    public const string VsockDeviceSocketName = "vsock.sock";
    public const string NetworkSocketName = "net.sock";
    public const string NetworkDeviceSocketName = "net-device.sock";
    public const string VpnkitEthernetSocketName = "vpnkit_eth.sock";
    public const string VpnkitPortSocketName = "vpnkit_port.sock";
    public const string VpnkitLogName = "vpnkit.log";
    public const string ControlSocketName = "control.sock";
    public const string ConsoleSocketName = "console.sock";
    public const string InflatedKernelName = "kernel";

    /// <summary>The host's vsock CID, which names the sockets a guest's connections reach.</summary>
    public const uint HostVsockCid = 2;

    /// <summary>The most <c>-virtiofs</c> shares a VM served by virtiofsd may have, which bounds their socket names.</summary>
    public const int MaxVirtiofsShares = 100;

    /// <summary>The socket names lkrun creates in a state dir, the numbered ones at their longest.</summary>
    public static IReadOnlyList<string> SocketNames { get; } =
    [
        QmpSocketName, SerialConsoleSocketName, VirtioConsoleSocketName, VsockDeviceSocketName, NetworkSocketName, NetworkDeviceSocketName,
        VpnkitEthernetSocketName, VpnkitPortSocketName, ControlSocketName, ConsoleSocketName,
        GuestVsockSocketName(uint.MaxValue), HostVsockSocketName(uint.MaxValue),
        VirtiofsSocketName(MaxVirtiofsShares - 1),
    ];

    /// <summary>The longest of <see cref="SocketNames"/>, which bounds how long a state dir's path may be.</summary>
    public static int LongestSocketName { get; } = SocketNames.Max(name => name.Length);

    public string Directory { get; } = directory;

    public string Uuid => PathOf(UuidName);

    public string Spec => PathOf(SpecName);

    public string MetadataIso => PathOf(MetadataIsoName);

    public string EfiVariables => PathOf(EfiVariablesName);

    public string EfiVariableStore => PathOf(EfiVariableStoreName);

    public string MachineIdentifier => PathOf(MachineIdentifierName);

    public string Mac => PathOf(MacName);

    public string Address => PathOf(AddressName);

    public string ConsoleLog => PathOf(ConsoleLogName);

    public string QemuLog => PathOf(QemuLogName);

    /// <summary>What a detached lkrun says once its command has returned.</summary>
    public string LkrunLog => PathOf(LkrunLogName);

    /// <summary>How the last run ended, written by lkrun as it exits.</summary>
    public string LastRun => PathOf(LastRunName);

    public string Lock => PathOf(LockName);

    public string LkrunPid => PathOf(LkrunPidName);

    public string QemuPid => PathOf(QemuPidName);

    public string QmpSocket => PathOf(QmpSocketName);

    public string SerialConsoleSocket => PathOf(SerialConsoleSocketName);

    public string VirtioConsoleSocket => PathOf(VirtioConsoleSocketName);

    public string VsockDeviceSocket => PathOf(VsockDeviceSocketName);

    /// <summary>lkrun's end of the network device's link.</summary>
    public string NetworkSocket => PathOf(NetworkSocketName);

    /// <summary>The device's end of a datagram link, which the engine binds.</summary>
    public string NetworkDeviceSocket => PathOf(NetworkDeviceSocketName);

    /// <summary>The ethernet socket of the shared network started for this VM (<c>-networking vpnkit</c>), upstream's name.</summary>
    public string VpnkitEthernetSocket => PathOf(VpnkitEthernetSocketName);

    /// <summary>That network's port socket.</summary>
    public string VpnkitPortSocket => PathOf(VpnkitPortSocketName);

    /// <summary>What that network's service says; it runs detached from the terminal.</summary>
    public string VpnkitLog => PathOf(VpnkitLogName);

    /// <summary>The control API (HTTP/1.1 + JSON) of the running VM.</summary>
    public string ControlSocket => PathOf(ControlSocketName);

    /// <summary>Where <c>lkrun console</c> attaches to the running VM's console.</summary>
    public string ConsoleSocket => PathOf(ConsoleSocketName);

    public string InflatedKernel => PathOf(InflatedKernelName);

    /// <summary>A disk created from a size alone: <c>disk.raw</c> for the first <c>-disk</c>, <c>diskN.raw</c> for the one at index N, as linuxkit names them.</summary>
    public static string DiskName(int index) =>
        index == 0 ? "disk.raw" : string.Create(CultureInfo.InvariantCulture, $"disk{index}.raw");

    public string Disk(int index) => PathOf(DiskName(index));

    /// <summary>Matches the names <see cref="VirtiofsSocketName"/> gives.</summary>
    public const string VirtiofsSocketPattern = "virtiofs*.sock";

    /// <summary>The vhost-user socket of the virtiofsd serving the <c>-virtiofs</c> share at <paramref name="index"/>.</summary>
    public static string VirtiofsSocketName(int index) => string.Create(CultureInfo.InvariantCulture, $"virtiofs{index}.sock");

    /// <summary>What the virtiofsd serving the share at <paramref name="index"/> printed, kept after the run as <c>qemu.log</c> is.</summary>
    public static string VirtiofsLogName(int index) => string.Create(CultureInfo.InvariantCulture, $"virtiofs{index}.log");

    public string VirtiofsSocket(int index) => PathOf(VirtiofsSocketName(index));

    public string VirtiofsLog(int index) => PathOf(VirtiofsLogName(index));

    /// <summary>Where a host program connects to reach guest vsock port <paramref name="port"/> (8 lowercase hex digits).</summary>
    public string GuestVsockSocket(uint port) => PathOf(GuestVsockSocketName(port));

    /// <summary>Where a host program listens for the guest's connections to host vsock port <paramref name="port"/> (hyperkit's naming).</summary>
    public string HostVsockSocket(uint port) => PathOf(HostVsockSocketName(port));

    /// <summary>Matches every <see cref="GuestVsockSocketName"/>, for a directory search.</summary>
    public const string GuestVsockSocketPattern = "guest.????????";

    public static string GuestVsockSocketName(uint port) => string.Create(CultureInfo.InvariantCulture, $"guest.{port:x8}");

    public static string HostVsockSocketName(uint port) => string.Create(CultureInfo.InvariantCulture, $"{HostVsockCid:x8}.{port:x8}");

    private string PathOf(string name) => System.IO.Path.Combine(Directory, name);
}
