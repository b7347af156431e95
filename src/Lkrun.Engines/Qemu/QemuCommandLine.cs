using System.Globalization;
using System.Net.Sockets;
using Lkrun.Services.Network;
using Lkrun.Spec;

namespace Lkrun.Engines.Qemu;

/// <summary>
/// Translates a VM spec and its host attachments into QEMU's argv. Pure: the same input gives the same output,
/// and nothing on the host is touched.
/// </summary>
public static class QemuCommandLine
{
    public const string MachineType = "q35";

    public static IReadOnlyList<string> Build(VmSpec spec, VmAttachments attachments, QemuHost host)
    {
        var args = new List<string>();
        AddMachine(args, spec, attachments, host);
        AddBoot(args, spec.Boot, attachments);
        AddConsoles(args, attachments);
        AddControl(args, attachments);
        AddNetwork(args, attachments);
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
            "-machine", MachineType,
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

    private static void AddBoot(List<string> args, BootSource boot, VmAttachments attachments)
    {
        switch (boot)
        {
            case KernelInitrdBoot initrd:
                args.AddRange(["-kernel", attachments.Kernel ?? initrd.Kernel, "-initrd", initrd.Initrd, "-append", initrd.Cmdline]);
                break;
            default:
                throw new EngineException($"the qemu backend cannot boot {boot.GetType().Name} yet");
        }
    }

    private static void AddConsoles(List<string> args, VmAttachments attachments)
    {
        args.AddRange(
        [
            "-chardev", $"socket,id=serial0,path={Escape(attachments.SerialConsoleSocket)}",
            "-serial", "chardev:serial0",
            "-device", "virtio-serial-pci,id=virtio-serial0",
            "-chardev", $"socket,id=virtcon0,path={Escape(attachments.VirtioConsoleSocket)}",
            "-device", "virtconsole,chardev=virtcon0,bus=virtio-serial0.0",
        ]);
    }

    private static void AddControl(List<string> args, VmAttachments attachments)
    {
        args.AddRange(
        [
            "-chardev", $"socket,id=qmp0,path={Escape(attachments.ControlSocket)}",
            "-mon", "chardev=qmp0,mode=control",
        ]);
    }

    /// <summary>
    /// Refuses, before anything is created, the network settings QEMU's user-mode networking cannot provide: the
    /// modes that need vpnkit, and host addresses other than IPv4 (QEMU 7's hostfwd takes IPv4 only).
    /// </summary>
    public static void CheckNetwork(NetworkSpec network)
    {
        if (network.Mode is not (NetworkMode.Vmnet or NetworkMode.None))
        {
            throw new EngineException(
                $"-networking {(network.Mode == NetworkMode.DockerForMac ? "docker-for-mac" : "vpnkit")}: not available with the qemu backend; use default, vmnet or none",
                exitCode: 2);
        }
        if (network.PublishedPorts.FirstOrDefault(port => port.HostAddress.AddressFamily != AddressFamily.InterNetwork) is { } port)
        {
            throw new EngineException($"-publish {port}: the qemu backend publishes on IPv4 host addresses only", exitCode: 2);
        }
    }

    /// <summary>
    /// The NAT network on QEMU's user-mode networking (libslirp): the gateway at .1, which is also the host's
    /// loopback as the guest sees it; DNS at .254, since slirp refuses DNS on the gateway; and a DHCP pool that
    /// starts at the leased address, so the one guest on this private network always receives exactly that.
    /// Published ports are slirp's host forwards, bound by QEMU itself.
    /// </summary>
    private static void AddNetwork(List<string> args, VmAttachments attachments)
    {
        if (attachments.Network is not { } network)
        {
            return;
        }
        if (network.Mode != NetworkMode.Vmnet)
        {
            throw new EngineException($"the qemu backend cannot attach a {network.Mode} network", exitCode: 2);
        }
        var netdev = new List<string>
        {
            "user",
            "id=net0",
            $"net={NatNetwork.Network}/{NatNetwork.PrefixLength}",
            $"host={NatNetwork.Gateway}",
            $"dns={NatNetwork.Dns}",
            $"dhcpstart={network.Address}",
            "ipv6=off",
        };
        netdev.AddRange(network.PublishedPorts.Select(port =>
            $"hostfwd={port.Protocol.ToString().ToLowerInvariant()}:{port.HostAddress}:{port.HostPort}-{network.Address}:{port.GuestPort}"));
        args.AddRange(
        [
            "-netdev", string.Join(',', netdev),
            "-device", $"virtio-net-pci,netdev=net0,mac={network.Mac}",
        ]);
    }
}
