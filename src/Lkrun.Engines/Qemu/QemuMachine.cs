using Lkrun.Services.Boot;
using Lkrun.Spec;

namespace Lkrun.Engines.Qemu;

/// <summary>The machine a VM runs on, resolved from the spec and the kernel.</summary>
public enum QemuMachine
{
    /// <summary>A PC: PCI devices, firmware, option ROMs. Boots anything, and every kernel finds its devices.</summary>
    Q35,

    /// <summary>
    /// QEMU's minimal machine: no PCI, devices on virtio-mmio transports, an ACPI generic event device for the
    /// power button, a tiny firmware that jumps to the kernel. Kernel boots of kernels that find virtio-mmio devices.
    /// </summary>
    Microvm,
}

public static class QemuMachineSelection
{
    /// <summary>
    /// <c>-machine</c> when it names one; otherwise microvm for a kernel booted at its PVH entry that finds
    /// virtio-mmio devices through ACPI, on KVM or on TCG with the host's TSC frequency known (see
    /// <see cref="HostTsc"/>), and q35 for everything else (ISOs, bzImages, kernels lkrun knows too little about,
    /// more disks and shares than microvm has transports for). The validator has refused microvm for ISOs already.
    /// </summary>
    public static QemuMachine Choose(VmSpec spec, BootKernel? kernel, QemuHost host)
    {
        var requested = spec.Engine is QemuEngineSpec qemu ? qemu.Machine : QemuMachineType.Auto;
        return requested switch
        {
            _ when spec.Boot is IsoBoot => QemuMachine.Q35,
            QemuMachineType.Q35 => QemuMachine.Q35,
            QemuMachineType.Microvm => QemuMachine.Microvm,
            _ when spec.Disks.Count + spec.SharedDirectories.Count > MicrovmDiskLimit => QemuMachine.Q35,
            _ when !host.IsKvm && host.TscKhz is null => QemuMachine.Q35,
            _ => kernel is { IsPvhElf: true, VirtioMmio: true } ? QemuMachine.Microvm : QemuMachine.Q35,
        };
    }

    /// <summary>Refuses, before anything is created, a microvm that could not keep time: TCG without the host's TSC frequency.</summary>
    public static void CheckHost(VmSpec spec, QemuHost host)
    {
        if (spec.Engine is QemuEngineSpec { Machine: QemuMachineType.Microvm } && !host.IsKvm && host.TscKhz is null)
        {
            throw new EngineException(
                "-machine microvm: under TCG the guest needs the host's TSC frequency, which /proc/cpuinfo does not give reliably on this host; use q35 or KVM",
                exitCode: 2);
        }
    }

    /// <summary>
    /// The <c>-disk</c> disks and <c>-virtiofs</c> shares microvm has transports for, besides the devices every VM
    /// may have: the RNG, the virtio console, the CD controller, the squashfs root, the network device and the
    /// vsock device.
    /// </summary>
    public const int MicrovmDiskLimit = QemuCommandLine.MicrovmTransports - 6;
}
