using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Spec;

namespace Lkrun.Engines.Vz.Plan;

/// <summary>
/// Translates a <see cref="VmSpec"/> and the host's inputs into the steps that build a Virtualization.framework
/// virtual machine. Pure: the same input gives the same plan, nothing on the host is touched, and a spec this
/// backend cannot run is refused with one line (an <see cref="EngineException"/>) before anything is made.
/// </summary>
public static class VzPlanner
{
    /// <summary>The oldest macOS the backend runs on: forced stops, disk caching modes and virtio-fs need 12.</summary>
    public static readonly MacOSVersion MinimumMacOS = MacOSVersion.Monterey;

    /// <summary>The name of the <c>VZVirtualMachineConfiguration</c> every other step configures.</summary>
    public const string Configuration = "configuration";

    public static VzPlan Plan(VmSpec spec, VzHostInputs host)
    {
        if (spec.Engine is not VirtualizationFrameworkEngineSpec)
        {
            throw new ArgumentException("the spec is not for the virtualization.framework backend", nameof(spec));
        }
        if (host.MacOS < MinimumMacOS)
        {
            throw new EngineException($"the virtualization.framework backend needs macOS {MinimumMacOS} or newer; this Mac runs {host.MacOS}", exitCode: 2);
        }

        var plan = new VzPlanBuilder(host.MacOS);
        var configuration = plan.Create(Configuration, "VZVirtualMachineConfiguration", "init", "the VM configuration");
        plan.Send(configuration, "setCPUCount:", $"-cpus {spec.Cpus}", null, new VzUnsigned((ulong)spec.Cpus));
        plan.Send(configuration, "setMemorySize:", $"-mem {spec.MemoryMiB}", null, new VzUInt64((ulong)spec.MemoryMiB * 1024 * 1024));

        var bootDevices = BootTranslator.Add(plan, configuration, spec, host);
        ConsoleTranslator.Add(plan, configuration, host.Console);
        StorageTranslator.Add(plan, configuration, bootDevices, spec.Disks, host.MetadataIso);
        var mtu = NetworkTranslator.Add(plan, configuration, spec.Network, host);
        DeviceTranslator.Add(plan, configuration);
        ShareTranslator.Add(plan, configuration, spec.SharedDirectories);

        plan.Check(configuration, "validateWithError:", "the VM configuration");
        plan.Create(VzPlan.VirtualMachine, "VZVirtualMachine", "initWithConfiguration:queue:", "the VM", null, configuration, VzQueue.Value);
        return plan.Build(mtu);
    }
}
