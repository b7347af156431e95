using Lkrun.Services.Network.Links;
using Lkrun.Spec;

namespace Lkrun.Engines.Vz;

/// <summary>
/// The macOS Virtualization.framework backend. Its device translators need the framework's Objective-C API, which
/// only exists on macOS; elsewhere the backend refuses to run and points at qemu.
/// </summary>
public sealed class VirtualizationFrameworkEngine : IVmEngine
{
    /// <summary>VZFileHandleNetworkDeviceAttachment takes one frame per datagram.</summary>
    public NetworkLinkKind NetworkLink => NetworkLinkKind.Datagram;

    public void CheckHost(VmSpec spec)
    {
        if (!OperatingSystem.IsMacOS())
        {
            throw new EngineException("the virtualization.framework backend needs macOS; on this system use the qemu backend (lkrun run qemu ...)", exitCode: 2);
        }
        throw new EngineException("this build of lkrun has no virtualization.framework support yet; use the qemu backend (lkrun run qemu ...)", exitCode: 2);
    }

    public Task<IRunningVm> StartAsync(VmSpec spec, VmAttachments attachments, CancellationToken cancellation) =>
        throw new PlatformNotSupportedException("virtualization.framework");
}
