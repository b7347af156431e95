using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Engines.Vz.Runtime;
using Lkrun.Engines.Vz.Runtime.MacOS;
using Lkrun.Services.State;

namespace Lkrun.Engines.Vz.Machine;

/// <summary>
/// What the engine needs from this Mac before it plans, and the one door to the real Objective-C runtime: the
/// facts and state-dir files that go into <see cref="VzHostInputs"/>, read here so that the planner reads nothing.
/// </summary>
public static class VzHost
{
    /// <summary>How much of the kernel <see cref="VzPlanner"/> looks at (the arm64 Image header is 64 bytes).</summary>
    public const int KernelHeaderLength = 64;

    /// <summary>This Mac's macOS; elsewhere, a version no plan accepts.</summary>
    public static MacOSVersion MacOS => OperatingSystem.IsMacOS() ? MacOSVersion.Of(Environment.OSVersion.Version) : new MacOSVersion(0);

    /// <summary>
    /// The real runtime, with Virtualization.framework loaded. Throws <see cref="EngineException"/> (exit code 2)
    /// anywhere but on macOS 12 or newer.
    /// </summary>
    public static IObjCRuntime LoadRuntime(Action<string> report)
    {
        if (!OperatingSystem.IsMacOS())
        {
            throw new EngineException("the virtualization.framework backend needs macOS; on this system use the qemu backend (lkrun run qemu ...)", exitCode: 2);
        }
        if (!OperatingSystem.IsMacOSVersionAtLeast(VzPlanner.MinimumMacOS.Major))
        {
            throw new EngineException($"the virtualization.framework backend needs macOS {VzPlanner.MinimumMacOS} or newer; this Mac runs {MacOS}", exitCode: 2);
        }
        return ObjCRuntime.Load(report);
    }

    /// <summary>The first bytes of the kernel to boot, for the planner's arm64 Image check.</summary>
    public static byte[] ReadKernelHeader(string kernel)
    {
        using var file = File.OpenRead(kernel);
        var header = new byte[KernelHeaderLength];
        return header[..file.ReadAtLeast(header, header.Length, throwOnEndOfStream: false)];
    }

    /// <summary>The VM's EFI variable store in its state dir, and whether an earlier run made it.</summary>
    public static VzEfiVariableStoreFile EfiVariableStore(StateLayout state) =>
        new(state.EfiVariableStore, File.Exists(state.EfiVariableStore));

    /// <summary>The VM's machine identifier file in its state dir, with what an earlier run kept there.</summary>
    public static VzMachineIdentifierFile MachineIdentifier(StateLayout state) =>
        new(state.MachineIdentifier, File.Exists(state.MachineIdentifier) ? File.ReadAllBytes(state.MachineIdentifier) : null);
}
