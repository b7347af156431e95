using System.Net.Sockets;
using Lkrun.Services.Boot;
using Lkrun.Services.Hosting;
using Lkrun.Services.Processes;
using Lkrun.Spec;

namespace Lkrun.Engines.Qemu;

/// <summary>Runs VMs with QEMU: resolves the host's QEMU and the VM's firmware, and refuses what it cannot run.</summary>
public sealed class QemuEngine(QemuEngineSpec settings) : IVmEngine
{
    public IVmPlan Prepare(VmSpec spec)
    {
        var host = QemuHost.Discover(settings.Binary, settings.Accelerator);
        QemuMachineSelection.CheckHost(spec, host);
        if (spec.Network.Mode is NetworkMode.Vpnkit or NetworkMode.DockerForMac)
        {
            throw new EngineException(
                $"-networking {(spec.Network.Mode == NetworkMode.DockerForMac ? "docker-for-mac" : "vpnkit")}: not available with the qemu backend; use default, vmnet or none",
                exitCode: 2);
        }
        var firmware = spec.Boot is IsoBoot { Uefi: true } iso ? QemuFirmware.Find(iso.Firmware) : null;
        var services = new HostServiceNeeds(
            ConsoleTransport.ListeningSockets,
            VsockTransport.VhostUser,
            spec.Network.Mode == NetworkMode.None ? null : QemuNetworkLink.Choose(Environment.GetEnvironmentVariable(QemuNetworkLink.EnvironmentVariable)),
            settings.KernelEntry,
            spec.SharedDirectories.Count == 0 ? null : SharedDirectoryTransport.VhostUser);
        return new QemuPlan(spec, host, firmware, services);
    }
}

/// <summary>
/// A QEMU VM, resolved: the binary and accelerator, the EFI firmware for EFI boots, and the transports of its
/// devices. Starting it runs QEMU with the command line <see cref="QemuCommandLine"/> builds and takes control
/// over QMP.
/// </summary>
public sealed record QemuPlan(VmSpec Spec, QemuHost Host, QemuFirmware? Firmware, HostServiceNeeds Services) : IVmPlan
{
    /// <summary>How long QEMU may take to connect to its control socket before it counts as failed to start.</summary>
    private static readonly TimeSpan StartupTimeout = TimeSpan.FromSeconds(30);

    /// <summary>How many of QEMU's last lines an error message quotes.</summary>
    private const int QemuLogLinesKept = 12;

    public IReadOnlyList<string> Notices =>
        Host.EmulatedForLackOfKvm ? ["/dev/kvm is not usable here: running the VM with software emulation (TCG), which is slower"] : [];

    public async Task<IRunningVm> StartAsync(VmAttachments attachments, CancellationToken cancellation)
    {
        var state = attachments.State;
        var firmware = Firmware is null ? null : new EfiFirmwareFiles(
            Firmware.Code,
            Firmware.VariablesTemplate is null ? null : EfiVariableStore.Prepare(Firmware.VariablesTemplate, state.EfiVariables));
        var args = QemuCommandLine.Build(Spec, attachments, Host, QemuMachineSelection.Choose(Spec, attachments.Kernel, Host), firmware);

        File.Delete(state.QmpSocket);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(state.QmpSocket));
        listener.Listen(1);
        try
        {
            var process = ChildProcess.Start(Host.Binary, args, state.QemuLog, QemuLogLinesKept, reason => new EngineException($"cannot start {Host.Binary}: {reason}"));
            var accept = listener.AcceptAsync(cancellation).AsTask();
            // QEMU connects to QMP early in its start-up, and may still reject its arguments after that.
            if (await Task.WhenAny(accept, process.Exited, Task.Delay(StartupTimeout, cancellation)) == accept)
            {
                try
                {
                    return await RunningQemu.AttachAsync(process, await accept, cancellation);
                }
                catch (QmpException)
                {
                    // Reported below with what QEMU printed.
                }
            }
            process.Kill();
            var exitCode = await process.Exited;
            throw new EngineException(process.Describe($"QEMU failed to start (exit code {exitCode})"));
        }
        finally
        {
            File.Delete(state.QmpSocket);
        }
    }
}
