using System.Net.Sockets;
using System.Runtime.InteropServices;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Machine;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Engines.Vz.Runtime;
using Lkrun.Services.Boot;
using Lkrun.Services.Hosting;
using Lkrun.Spec;

namespace Lkrun.Engines.Vz;

/// <summary>
/// What the engine knows of its host: the macOS it runs on, the architecture, and its one door to the Objective-C
/// runtime with Virtualization.framework loaded. Tests stand a Mac in with a recording runtime.
/// </summary>
public sealed record VzHostFacts(MacOSVersion MacOS, Architecture Architecture, Func<Action<string>, IObjCRuntime> LoadRuntime)
{
    /// <summary>This machine.</summary>
    public static VzHostFacts Current => new(VzHost.MacOS, RuntimeInformation.OSArchitecture, VzHost.LoadRuntime);
}

/// <summary>
/// The macOS Virtualization.framework backend. <see cref="Prepare"/> plans the VM once with stand-in descriptors,
/// so that every rule of <see cref="VzPlanner"/> (the one place this backend's rules live) is checked before
/// anything is created; the plan's start plans again with what the host services made, and runs it.
/// </summary>
public sealed class VirtualizationFrameworkEngine(VzHostFacts host, Action<string> notice) : IVmEngine
{
    /// <summary>Where the descriptors the host services will open go in the trial plan; it never runs.</summary>
    private const int StandInDescriptor = -1;

    public IVmPlan Prepare(VmSpec spec)
    {
        if (host.MacOS.Major == 0)
        {
            throw new EngineException("the virtualization.framework backend needs macOS; on this system use the qemu backend (lkrun run qemu ...)", exitCode: 2);
        }
        var trial = VzPlanner.Plan(spec, new VzHostInputs
        {
            MacOS = host.MacOS,
            Architecture = host.Architecture,
            KernelHeader = TrialKernelHeader(spec),
            EfiVariableStore = new VzEfiVariableStoreFile(spec.StateDirectory, Exists: false),
            MachineIdentifier = host.MacOS >= MacOSVersion.Ventura ? new VzMachineIdentifierFile(spec.StateDirectory, null) : null,
            Console = new VzConsoleDescriptors(StandInDescriptor, StandInDescriptor),
            NetworkDescriptor = StandInDescriptor,
            MacAddress = "02:00:00:00:00:00",
        });
        var services = new HostServiceNeeds(
            ConsoleTransport.SocketPair,
            VsockTransport.Streams,
            spec.Network.Mode == NetworkMode.Vmnet ? NetworkLink.DatagramSocketPair : null,
            X86KernelEntry: null)
        {
            NetworkMtu = trial.NetworkMtu ?? NatSubnet.Mtu,
        };
        // Loaded here so that a Mac without the framework is told before anything is created.
        return new VzVmPlan(spec, host, host.LoadRuntime(notice), services, notice);
    }

    /// <summary>
    /// The header the arm64 Image rule looks at. A gzip-compressed kernel is inflated only when the VM starts, so
    /// its rule is checked then; until then it stands in as an Image.
    /// </summary>
    private ReadOnlyMemory<byte> TrialKernelHeader(VmSpec spec)
    {
        var kernel = spec.Boot switch
        {
            KernelInitrdBoot boot => boot.Kernel,
            KernelSquashfsBoot boot => boot.Kernel,
            _ => null,
        };
        if (kernel is null || host.Architecture != Architecture.Arm64 || KernelImage.IsGzip(kernel))
        {
            var image = new byte[VzHost.KernelHeaderLength];
            "ARMd"u8.CopyTo(image.AsSpan(BootTranslator.Arm64MagicOffset));
            return image;
        }
        return VzHost.ReadKernelHeader(kernel);
    }
}

/// <summary>
/// A Virtualization.framework VM, ready to start: its console on a socket pair to the relay, vsock streams handed
/// to lkrun's front end one descriptor each, and with lkrun's network a connected datagram socket per frame.
/// </summary>
public sealed record VzVmPlan(VmSpec Spec, VzHostFacts Host, IObjCRuntime Runtime, HostServiceNeeds Services, Action<string> Notice) : IVmPlan
{
    public IReadOnlyList<string> Notices => [];

    public async Task<IRunningVm> StartAsync(VmAttachments attachments, CancellationToken cancellation)
    {
        var state = attachments.State;
        var console = Descriptor(attachments.ConsoleSocket ?? throw new ArgumentException("the console needs its socket", nameof(attachments)));
        var kernel = attachments.Kernel?.Path;
        var plan = VzPlanner.Plan(Spec, new VzHostInputs
        {
            MacOS = Host.MacOS,
            Architecture = Host.Architecture,
            Kernel = kernel,
            KernelHeader = kernel is null ? default : VzHost.ReadKernelHeader(kernel),
            MetadataIso = attachments.MetadataIso,
            EfiVariableStore = Spec.Boot is IsoBoot ? VzHost.EfiVariableStore(state) : null,
            MachineIdentifier = Host.MacOS >= MacOSVersion.Ventura ? VzHost.MachineIdentifier(state) : null,
            Console = new VzConsoleDescriptors(console, console),
            NetworkDescriptor = attachments.NetworkDevice is { } network ? Descriptor(network) : null,
            MacAddress = attachments.Mac?.ToString(),
        });
        var vm = await VzVirtualMachine.StartAsync(Runtime, plan, Host.MacOS, Notice, cancellation);
        if (vm.SocketDevice is { } sockets)
        {
            attachments.GuestSockets?.Attach(sockets);
        }
        return vm;
    }

    /// <summary>
    /// The number of a descriptor the host services keep open until the VM has ended; the plan hands the framework
    /// duplicates of it.
    /// </summary>
    private static int Descriptor(SafeSocketHandle socket) => (int)socket.DangerousGetHandle();
}
