using System.Runtime.InteropServices;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Spec;

namespace Lkrun.Engines.Vz.Plan;

/// <summary>
/// The boot loader, the platform and its identity. Kernel boots go through <c>VZLinuxBootLoader</c> with the
/// guest's console on hvc0; EFI ISO boots through <c>VZEFIBootLoader</c> with the VM's own variable store.
/// </summary>
internal static class BootTranslator
{
    /// <summary>What LinuxKit appends to every cmdline on this backend: the one console it has is a virtio console.</summary>
    public const string ConsoleParameter = "console=hvc0";

    /// <summary>The kernel parameter that makes a kernel+squashfs guest mount its first disk as root.</summary>
    public const string SquashfsRootParameter = "root=/dev/vda";

    /// <summary>Where an arm64 Linux Image keeps its magic, <c>ARM\x64</c> (Documentation/arch/arm64/booting.rst).</summary>
    public const int Arm64MagicOffset = 0x38;

    private static ReadOnlySpan<byte> Arm64Magic => "ARMd"u8;

    /// <summary>Adds the boot steps; returns the storage devices the boot needs first in line (the root or the ISO).</summary>
    public static IReadOnlyList<VzObjectRef> Add(VzPlanBuilder plan, VzObjectRef configuration, VmSpec spec, VzHostInputs host)
    {
        var devices = new List<VzObjectRef>();
        switch (spec.Boot)
        {
            case KernelInitrdBoot initrd:
                {
                    var loader = LinuxBootLoader(plan, host, initrd.Kernel, Cmdline(initrd.Cmdline));
                    plan.Send(loader, "setInitialRamdiskURL:", initrd.Initrd, null, new VzFileUrl(initrd.Initrd));
                    plan.Send(configuration, "setBootLoader:", "the boot loader", null, loader);
                    break;
                }
            case KernelSquashfsBoot squashfs:
                {
                    var loader = LinuxBootLoader(plan, host, squashfs.Kernel, Cmdline(squashfs.Cmdline, SquashfsRootParameter));
                    plan.Send(configuration, "setBootLoader:", "the boot loader", null, loader);
                    devices.Add(StorageTranslator.ReadOnlyImage(plan, "root", squashfs.Squashfs, usb: false, $"the squashfs root {squashfs.Squashfs}", VzSources.VzExample));
                    break;
                }
            case IsoBoot { Uefi: true } iso:
                {
                    if (!plan.HostHas(MacOSVersion.Ventura))
                    {
                        throw new EngineException($"-iso --uefi: needs macOS {MacOSVersion.Ventura} or newer with the virtualization.framework backend; this Mac runs {plan.Host}", exitCode: 2);
                    }
                    var store = EfiVariableStore(plan, host);
                    var loader = plan.Create("bootLoader", "VZEFIBootLoader", "init", "-iso --uefi");
                    plan.Send(loader, "setVariableStore:", "-iso --uefi", null, store);
                    plan.Send(configuration, "setBootLoader:", "the boot loader", null, loader);
                    devices.Add(StorageTranslator.ReadOnlyImage(plan, "iso", iso.Iso, usb: true, $"-iso {iso.Iso}", VzSources.VfkitUsage + " (ISOs on USB mass storage)"));
                    break;
                }
            case IsoBoot:
                throw new EngineException("-iso: the virtualization.framework backend boots ISOs through EFI only; add --uefi", exitCode: 2);
            default:
                throw new EngineException($"the virtualization.framework backend cannot boot {spec.Boot.GetType().Name}", exitCode: 2);
        }
        Platform(plan, configuration, host);
        return devices;
    }

    /// <summary>The image's cmdline with <paramref name="extra"/> parameters and <see cref="ConsoleParameter"/> last, as upstream appends it.</summary>
    public static string Cmdline(string cmdline, params string[] extra) => string.Join(' ', [.. cmdline.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries), .. extra, ConsoleParameter]);

    /// <summary>True when <paramref name="header"/> starts an uncompressed arm64 Linux Image.</summary>
    public static bool IsArm64Image(ReadOnlySpan<byte> header) =>
        header.Length >= Arm64MagicOffset + Arm64Magic.Length && header.Slice(Arm64MagicOffset, Arm64Magic.Length).SequenceEqual(Arm64Magic);

    private static VzObjectRef LinuxBootLoader(VzPlanBuilder plan, VzHostInputs host, string imageKernel, string cmdline)
    {
        var kernel = host.Kernel ?? imageKernel;
        if (host.Architecture == Architecture.Arm64 && !IsArm64Image(host.KernelHeader.Span))
        {
            throw new EngineException(
                $"{imageKernel}: not an uncompressed arm64 Image (no ARM\\x64 magic at 0x38); Virtualization.framework boots arm64 kernels only as a plain Image",
                exitCode: 1);
        }
        var loader = plan.Create("bootLoader", "VZLinuxBootLoader", "initWithKernelURL:", imageKernel, null, new VzFileUrl(kernel));
        plan.Send(loader, "setCommandLine:", "the kernel cmdline", VzSources.LinuxKit + " (appends console=hvc0)", new VzString(cmdline));
        return loader;
    }

    /// <summary>The VM's own store: created on its first EFI boot (never over an existing one), then reused.</summary>
    private static VzObjectRef EfiVariableStore(VzPlanBuilder plan, VzHostInputs host)
    {
        var store = host.EfiVariableStore ?? throw new ArgumentException("an EFI boot needs the VM's variable store path", nameof(host));
        return store.Exists
            ? plan.Create("variableStore", "VZEFIVariableStore", "initWithURL:", store.Path, null, new VzFileUrl(store.Path))
            : plan.Create("variableStore", "VZEFIVariableStore", "initCreatingVariableStoreAtURL:options:error:", store.Path, null, new VzFileUrl(store.Path), new VzUnsigned(0));
    }

    /// <summary>
    /// The generic platform, with the VM's machine identifier on macOS 13 and newer (EFI needs one, and it keeps the
    /// VM one machine across runs): read back from the state dir, or made and written there on the first run.
    /// </summary>
    private static void Platform(VzPlanBuilder plan, VzObjectRef configuration, VzHostInputs host)
    {
        var platform = plan.Create("platform", "VZGenericPlatformConfiguration", "init", "the VM platform");
        if (plan.HostHas(MacOSVersion.Ventura))
        {
            var file = host.MachineIdentifier ?? throw new ArgumentException("macOS 13 needs the VM's machine identifier file", nameof(host));
            VzObjectRef identifier;
            if (file.Existing is { } bytes)
            {
                identifier = plan.Create("machineIdentifier", "VZGenericMachineIdentifier", "initWithDataRepresentation:", file.Path, null, new VzData(new(bytes)));
            }
            else
            {
                identifier = plan.Create("machineIdentifier", "VZGenericMachineIdentifier", "init", file.Path);
                plan.SaveData(identifier, "dataRepresentation", file.Path, file.Path, VzCatalogue.Selector("dataRepresentation").Source);
            }
            plan.Send(platform, "setMachineIdentifier:", file.Path, null, identifier);
        }
        plan.Send(configuration, "setPlatform:", "the VM platform", null, platform);
    }
}
