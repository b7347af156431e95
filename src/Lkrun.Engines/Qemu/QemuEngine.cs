using System.Net.Sockets;
using Lkrun.Services.Boot;
using Lkrun.Spec;

namespace Lkrun.Engines.Qemu;

/// <summary>Runs VMs with QEMU: resolves the host's QEMU, starts it, and takes control over QMP.</summary>
public sealed class QemuEngine(Action<string> notice) : IVmEngine
{
    public const string LogFileName = "qemu.log";

    /// <summary>How long QEMU may take to connect to its control socket before it counts as failed to start.</summary>
    private static readonly TimeSpan StartupTimeout = TimeSpan.FromSeconds(30);

    private QemuHost? _host;
    private QemuFirmware? _firmware;

    public void CheckHost(VmSpec spec)
    {
        var engine = spec.Engine as QemuEngineSpec ?? throw new ArgumentException("not a qemu spec", nameof(spec));
        _host = QemuHost.Discover(engine.Binary, engine.Accelerator, notice);
        QemuMachineSelection.CheckHost(spec, _host);
        QemuCommandLine.CheckNetwork(spec.Network);
        if (spec.Boot is IsoBoot { Uefi: true } iso)
        {
            _firmware = QemuFirmware.Find(iso.Firmware);
        }
    }

    public async Task<IRunningVm> StartAsync(VmSpec spec, VmAttachments attachments, CancellationToken cancellation)
    {
        var host = _host ?? throw new InvalidOperationException("CheckHost must run first");
        var firmware = _firmware is null ? null : new EfiFirmwareFiles(
            _firmware.Code,
            _firmware.VariablesTemplate is null ? null : EfiVariableStore.Prepare(_firmware.VariablesTemplate, attachments.StateDirectory));
        var args = QemuCommandLine.Build(spec, attachments, host, QemuMachineSelection.Choose(spec, attachments.Kernel, host), firmware);

        File.Delete(attachments.ControlSocket);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(attachments.ControlSocket));
        listener.Listen(1);
        try
        {
            var process = QemuProcess.Start(host.Binary, args, Path.Combine(attachments.StateDirectory, LogFileName));
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
            throw new EngineException(Describe($"QEMU failed to start (exit code {exitCode})", process));
        }
        finally
        {
            File.Delete(attachments.ControlSocket);
        }
    }

    internal static string Describe(string what, QemuProcess process)
    {
        var lines = process.LastLines();
        return lines.Count == 0 ? what : $"{what}; it said: {string.Join(" | ", lines)}";
    }
}
