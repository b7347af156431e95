using System.Runtime.InteropServices;
using Lkrun.Cli;
using Lkrun.Engines;
using Lkrun.Engines.Qemu;
using Lkrun.Engines.Vz;
using Lkrun.Services.Boot;
using Lkrun.Services.Console;
using Lkrun.Services.Disks;
using Lkrun.Services.Metadata;
using Lkrun.Services.Network;
using Lkrun.Services.Vsock;
using Lkrun.Services.Power;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun;

/// <summary>
/// Runs one VM: checks everything that can be checked before creating anything, prepares the host services in
/// the state dir, starts the engine, and turns signals into a clean ACPI shutdown.
/// </summary>
public static class VmLauncher
{
    public const string ConsoleLogName = "console.log";
    public const string ControlSocketName = "qmp.sock";
    public const string SpecFileName = "vm.json";
    public const string MetadataIsoName = "data.iso";
    public const string VsockSocketName = "vsock.sock";

    /// <summary>The guest's vsock CID, as Virtualization.framework and hyperkit give it.</summary>
    public const uint GuestCid = 3;

    public static async Task<int> RunAsync(RunOptions options, CancellationToken cancellation)
    {
        VmSpec spec;
        IVmEngine engine;
        StateDirectory state;
        NetworkSetup network;
        try
        {
            spec = SpecMapper.ToSpec(options);
            engine = spec.Engine switch
            {
                QemuEngineSpec => new QemuEngine(Notice),
                VirtualizationFrameworkEngineSpec => new VirtualizationFrameworkEngine(),
                var other => throw new EngineException($"no engine for {other}"),
            };
            engine.CheckHost(spec);
            network = NetworkSetup.Check(spec.Network, spec.StateDirectory, LeaseRegistry.ForCurrentUser());
            state = StateDirectory.Acquire(spec.StateDirectory);
        }
        catch (Exception e) when (e is IUserError error)
        {
            return Fail(e.Message, error.ExitCode);
        }
        catch (StateDirectoryException e)
        {
            return Fail(e.Message, 1);
        }

        using (network)
        using (state)
        {
            return await RunInStateDirectoryAsync(spec, engine, state, network, cancellation);
        }
    }

    private static async Task<int> RunInStateDirectoryAsync(
        VmSpec spec, IVmEngine engine, StateDirectory state, NetworkSetup network, CancellationToken cancellation)
    {
        var interactive = spec.Console.Mode == ConsoleMode.Terminal && TerminalSession.IsInteractive;
        var shutdown = new ShutdownRequests(spec.StopTimeout);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, shutdown.OnSignal);
        using var onHangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, shutdown.OnSignal);
        // On an interactive console Ctrl-C is a key for the guest; otherwise it asks for a clean shutdown.
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, interactive ? IgnoreSignal : shutdown.OnSignal);
        IRunningVm? vm = null;
        ConsoleRelay? console = null;
        UnixSocketFrontEnd? vsockSockets = null;
        VsockDevice? vsock = null;
        SlirpNetwork? natNetwork = null;
        try
        {
            File.WriteAllText(state.PathOf(SpecFileName), VmSpecJson.Serialize(spec));
            var uuid = VmIdentity.LoadOrCreate(state);
            foreach (var created in DiskImages.CreateMissing(spec.Disks, Notice))
            {
                state.TrackCreated(created);
            }
            var metadataIso = spec.Metadata is null ? null : await WriteMetadataAsync(spec.Metadata, uuid, state, cancellation);
            var kernel = spec.Boot switch
            {
                KernelInitrdBoot boot => KernelImage.Uncompressed(boot.Kernel, state.Path),
                KernelSquashfsBoot boot => KernelImage.Uncompressed(boot.Kernel, state.Path),
                _ => null,
            };
            var serialSocket = state.PathOf(ConsoleRelay.SerialSocketName);
            var virtioSocket = state.PathOf(ConsoleRelay.VirtioSocketName);
            console = ConsoleRelay.Start(
                [serialSocket, virtioSocket],
                OpenConsoleOutput(spec, state),
                interactive ? TerminalSession.OpenStandardInput() : null,
                command => OnConsoleCommand(command, vm),
                error => OnConsoleOutputLost(error, spec, shutdown));
            // The device is always there, so a guest can reach the host's 00000002.PORT sockets without -vsock-ports.
            vsockSockets = UnixSocketFrontEnd.Create(state.Path, spec.VsockPorts, Notice);
            vsock = VsockDevice.Start(vsockSockets, state.PathOf(VsockSocketName), GuestCid, line => Notice(line));
            var guestNetwork = network.Attach(state, uuid, Notice);
            // The network listens before the VM starts, so QEMU finds it when it connects.
            natNetwork = guestNetwork is null ? null : SlirpNetwork.Start(guestNetwork, Notice);
            var attachments = new VmAttachments
            {
                Uuid = uuid,
                Kernel = kernel,
                MetadataIso = metadataIso,
                SerialConsoleSocket = serialSocket,
                VirtioConsoleSocket = virtioSocket,
                ControlSocket = state.PathOf(ControlSocketName),
                StateDirectory = state.Path,
                Network = guestNetwork,
                VsockSocket = state.PathOf(VsockSocketName),
            };
            vm = await engine.StartAsync(spec, attachments, cancellation);
        }
        catch (Exception e) when (e is IUserError or IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException)
        {
            if (natNetwork is not null)
            {
                await natNetwork.DisposeAsync();
            }
            if (console is not null)
            {
                await console.DisposeAsync();
            }
            if (vsock is not null)
            {
                await vsock.DisposeAsync();
            }
            if (vsockSockets is not null)
            {
                await vsockSockets.DisposeAsync();
            }
            state.RollBack();
            return Fail(e.Message, e is IUserError error ? error.ExitCode : 1);
        }

        await using (vsockSockets)
        await using (vsock)
        await using (vm)
        await using (console)
        await using (natNetwork)
        {
            using var terminal = interactive ? TerminalSession.EnterRawMode() : null;
            shutdown.Attach(vm);
            var exit = await vm.Exit;
            terminal?.Dispose();
            if (await shutdown.OutcomeAsync() == ShutdownOutcome.StoppedHard)
            {
                return Fail($"the guest did not power off within {spec.StopTimeout.TotalSeconds:0.#} s of the power button; stopped it", 1);
            }
            return exit.IsClean ? 0 : Fail(exit.Detail ?? exit.Reason.ToString(), 1);
        }
    }

    /// <summary>Writes the metadata CD afresh on every run, so it always carries this run's data.</summary>
    private static async Task<string> WriteMetadataAsync(MetadataSpec metadata, Guid uuid, StateDirectory state, CancellationToken cancellation)
    {
        var path = state.PathOf(MetadataIsoName);
        var existed = File.Exists(path);
        await MetadataIso.WriteFileAsync(path, metadata, uuid, cancellation);
        return existed ? path : state.TrackCreated(path);
    }

    private static Stream OpenConsoleOutput(VmSpec spec, StateDirectory state)
    {
        if (spec.Console.Mode == ConsoleMode.Terminal)
        {
            return TerminalSession.OpenStandardOutput();
        }
        var path = state.PathOf(ConsoleLogName);
        Notice($"console output goes to {path}");
        return new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read);
    }

    private static void OnConsoleCommand(ConsoleCommand command, IRunningVm? vm)
    {
        if (vm is null)
        {
            return;
        }
        _ = command switch
        {
            ConsoleCommand.StopVm => vm.StopHardAsync(CancellationToken.None),
            ConsoleCommand.PowerButton => vm.PressPowerButtonAsync(CancellationToken.None),
            _ => Task.CompletedTask,
        };
    }

    /// <summary>
    /// Nobody reads the console any more (the pipe's reader ended, as with <c>lkrun run ... | grep -m1 ...</c>):
    /// like a hang-up, that asks for a clean shutdown. A console log that cannot be written only says so.
    /// </summary>
    private static void OnConsoleOutputLost(IOException error, VmSpec spec, ShutdownRequests shutdown)
    {
        if (spec.Console.Mode == ConsoleMode.Terminal)
        {
            Notice($"the console output was closed ({error.Message}); shutting the VM down");
            shutdown.OnConsoleLost();
        }
        else
        {
            Notice($"writing {ConsoleLogName} failed ({error.Message}); the rest of the console is not recorded");
        }
    }

    private static void IgnoreSignal(PosixSignalContext context) => context.Cancel = true;

    /// <summary>One line of lkrun's own on stderr; a raw terminal does not return the carriage by itself.</summary>
    private static void Notice(string message) =>
        System.Console.Error.Write($"lkrun: {message}{(TerminalSession.IsRaw ? "\r\n" : "\n")}");

    private static int Fail(string message, int exitCode)
    {
        Notice(message);
        return exitCode;
    }

    /// <summary>
    /// The first SIGTERM (or SIGHUP, or SIGINT off an interactive console) presses the power button and gives the
    /// guest its grace period; a second one stops the VM at once. A closed console output presses the button too,
    /// but does not count as a signal: a terminal that goes away sends SIGHUP and fails the next write, and that
    /// is one request. A request that comes while the VM is still starting stops it as soon as it has started,
    /// since its guest cannot handle the button yet.
    /// </summary>
    private sealed class ShutdownRequests(TimeSpan gracePeriod)
    {
        private readonly object _gate = new();
        private IRunningVm? _vm;
        private Task<ShutdownOutcome>? _sequence;
        private int _signals;
        private bool _consoleLost;

        public void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            lock (_gate)
            {
                _signals++;
                ActLocked();
            }
        }

        public void OnConsoleLost()
        {
            lock (_gate)
            {
                _consoleLost = true;
                ActLocked();
            }
        }

        public void Attach(IRunningVm vm)
        {
            lock (_gate)
            {
                _vm = vm;
                if (_signals > 0 || _consoleLost)
                {
                    _ = vm.StopHardAsync(CancellationToken.None);
                }
            }
        }

        private void ActLocked()
        {
            if (_vm is null)
            {
                return;
            }
            if (_signals > 1)
            {
                _ = _vm.StopHardAsync(CancellationToken.None);
            }
            else if (_sequence is null)
            {
                var vm = _vm;
                _sequence = Task.Run(() => new ShutdownSequence(vm, gracePeriod).RunAsync(CancellationToken.None));
            }
        }

        public async Task<ShutdownOutcome?> OutcomeAsync() => _sequence is null ? null : await _sequence;
    }
}
