using System.Globalization;
using Lkrun.Spec;

namespace Lkrun.Engines.Qemu;

/// <summary>
/// Translates a VM spec and its host attachments into QEMU's argv. Pure: the same input gives the same output,
/// and nothing on the host is touched.
/// </summary>
public static class QemuCommandLine
{
    public const string MachineType = "q35";
    public const string PidFileName = "qemu.pid";

    public static IReadOnlyList<string> Build(VmSpec spec, VmAttachments attachments, QemuHost host)
    {
        var args = new List<string>();
        AddMachine(args, spec, attachments, host);
        AddBoot(args, spec.Boot, attachments);
        AddConsoles(args, attachments);
        AddControl(args, attachments);
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
            "-pidfile", Path.Combine(attachments.StateDirectory, PidFileName),
        ]);
    }
}
