using Lkrun.Spec;

namespace Lkrun.Engines.Vz;

/// <summary>
/// The macOS Virtualization.framework backend. Its device translators need the framework's Objective-C API, which
/// only exists on macOS; elsewhere the backend refuses to run and points at qemu.
/// </summary>
public sealed class VirtualizationFrameworkEngine : IVmEngine
{
    public IVmPlan Prepare(VmSpec spec)
    {
        if (spec.Boot is IsoBoot { Uefi: false })
        {
            throw SpecException.Usage("-iso: the virtualization.framework backend boots ISOs through EFI only; add --uefi");
        }
        if (spec.Disks.FirstOrDefault(disk => disk.Format == DiskFormat.Qcow2) is { } qcow2)
        {
            throw SpecException.Usage($"-disk {qcow2.Path}: format=qcow2 needs the qemu backend; disks are raw elsewhere");
        }
        if (!OperatingSystem.IsMacOS())
        {
            throw new EngineException("the virtualization.framework backend needs macOS; on this system use the qemu backend (lkrun run qemu ...)", exitCode: 2);
        }
        throw new EngineException("this build of lkrun has no virtualization.framework support yet; use the qemu backend (lkrun run qemu ...)", exitCode: 2);
    }
}
