using System.Runtime.InteropServices;
using Lkrun.Control;
using Lkrun.Engines;
using Lkrun.Services.Console;
using Lkrun.Services.Hosting;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Power;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun;

/// <summary>How <c>lkrun run</c> was asked to run the VM, beside its spec: its name, and whether in the background.</summary>
public sealed record LaunchOptions(string? Name, bool Detached);

/// <summary>
/// Runs one VM: the engine prepares its plan and the host services check the host, creating nothing; then the
/// state dir is taken and the VM named, the services start, the engine starts the VM, the control API opens, and
/// lkrun waits for the VM to end, turning every request to stop it into a clean ACPI shutdown or a hard stop.
/// </summary>
public static class VmLauncher
{
    /// <summary>What a detached lkrun writes on stdout, as its last word there, once its VM runs.</summary>
    public const string RunningReport = "running";

    public static async Task<int> RunAsync(VmSpec spec, LaunchOptions launch, CancellationToken cancellation)
    {
        IVmPlan plan;
        HostPreflight preflight;
        StateDirectory state;
        var registry = VmRegistry.ForCurrentUser();
        try
        {
            plan = EngineFactory.For(spec.Engine, Notice).Prepare(spec);
            preflight = HostServices.Check(spec, plan.Services, LeaseRegistry.ForCurrentUser());
        }
        catch (Exception e) when (e is IUserError error)
        {
            return Fail(e.Message, error.ExitCode);
        }
        using (preflight)
        {
            try
            {
                registry.ChooseName(launch.Name, spec.Name, spec.StateDirectory);
                state = StateDirectory.Acquire(spec.StateDirectory);
            }
            catch (SpecException e)
            {
                return Fail(e.Message, e.ExitCode);
            }
            catch (Exception e) when (e is StateDirectoryException or IOException or InvalidDataException or UnauthorizedAccessException)
            {
                return Fail(e is StateDirectoryException ? e.Message : $"state dir {spec.StateDirectory}: {e.Message}", 1);
            }
            using (state)
            {
                var started = DateTimeOffset.UtcNow;
                string name;
                try
                {
                    name = registry.Register(launch.Name, spec.Name, spec.StateDirectory);
                }
                catch (Exception e) when (e is SpecException or IOException or InvalidDataException or UnauthorizedAccessException)
                {
                    state.RollBack();
                    return Fail(e.Message, e is SpecException usage ? usage.ExitCode : 1);
                }
                using var log = launch.Detached ? NoticeLog.Open(state.Layout.LkrunLog) : null;
                if (state.KilledHolder is { } killed)
                {
                    Notice($"the lkrun that ran this VM before (pid {killed}) was killed; removed what it left in {state.Path}");
                }
                foreach (var notice in plan.Notices)
                {
                    Notice(notice);
                }
                var run = new Run(spec, plan, preflight, state, name, launch.Detached, started);
                var ending = await run.RunAsync(cancellation);
                if (!Directory.Exists(state.Path))
                {
                    // A run that failed to start in a dir it created took the dir away again.
                    registry.Remove(spec.StateDirectory);
                }
                else if (ending.Record is not null)
                {
                    ending.Record.Write(state.Layout);
                }
                return ending.ExitCode;
            }
        }
    }

    /// <summary>One line of lkrun's own on stderr; a raw terminal does not return the carriage by itself.</summary>
    internal static void Notice(string message)
    {
        var line = $"lkrun: {message}{(TerminalSession.IsRaw ? "\r\n" : "\n")}";
        System.Console.Error.Write(line);
        NoticeLog.Current?.Write(line);
    }

    private static int Fail(string message, int exitCode)
    {
        Notice(message);
        return exitCode;
    }

    /// <summary>How a run ended: the exit code, and the record for <c>last-run.json</c> once the VM had started.</summary>
    private sealed record Ending(int ExitCode, LastRun? Record);

    /// <summary>One run of the VM, from the services' start to the VM's end.</summary>
    private sealed class Run(
        VmSpec spec, IVmPlan plan, HostPreflight preflight, StateDirectory state, string name, bool detached, DateTimeOffset started)
    {
        private readonly ShutdownRequests _shutdown = new(spec.StopTimeout);
        private readonly bool _interactive = !detached && spec.Console.Mode == ConsoleMode.Terminal && TerminalSession.IsInteractive;
        private IRunningVm? _vm;

        public async Task<Ending> RunAsync(CancellationToken cancellation)
        {
            using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _shutdown.OnSignal);
            using var onHangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, _shutdown.OnSignal);
            // On an interactive console Ctrl-C is a key for the guest; otherwise it asks for a clean shutdown.
            using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, _interactive ? IgnoreSignal : _shutdown.OnSignal);

            HostServices? services = null;
            try
            {
                var console = new ConsoleSettings(
                    OpenConsoleOutput(),
                    _interactive ? TerminalSession.OpenStandardInput() : null,
                    OnConsoleCommand,
                    OnConsoleOutputLost,
                    _interactive ? $"its console is on the terminal of lkrun run (pid {Environment.ProcessId})" : null);
                services = await HostServices.StartAsync(preflight, state, console, Notice, cancellation);
                _vm = await plan.StartAsync(services.Attachments, cancellation);
            }
            catch (Exception e) when (e is IUserError or IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException)
            {
                if (services is not null)
                {
                    await services.DisposeAsync();
                }
                state.RollBack();
                Notice(e.Message);
                return new Ending(e is IUserError error ? error.ExitCode : 1, new LastRun(started, DateTimeOffset.UtcNow, 1, $"did not start: {e.Message}", Crashed: false));
            }

            await using (services)
            await using (_vm)
            {
                using var terminal = _interactive ? TerminalSession.EnterRawMode() : null;
                var vm = _vm;
                _shutdown.Attach(vm);
                var failure = await OpenControlAsync(vm, services);
                await using (failure.Control)
                {
                    if (detached && failure.Message is null)
                    {
                        Detach(services);
                    }
                    var serviceFailure = failure.Message is { } controlFailure ? Task.FromResult(controlFailure) : services.Failure;
                    if (await Task.WhenAny(vm.Exit, serviceFailure) == serviceFailure)
                    {
                        await vm.StopHardAsync(CancellationToken.None);
                        terminal?.Dispose();
                        return End(1, $"{await serviceFailure}; stopped the VM", crashed: true);
                    }
                    var exit = await vm.Exit;
                    terminal?.Dispose();
                    if (await _shutdown.HardStopAsync() is { } hardStop)
                    {
                        return End(1, hardStop, crashed: false);
                    }
                    if (!exit.IsClean)
                    {
                        return End(1, exit.Detail ?? exit.Reason.ToString(), crashed: true);
                    }
                    return End(0, exit.Reason switch
                    {
                        VmExitReason.GuestPoweredOff => "the guest powered off",
                        VmExitReason.GuestRebooted => "the guest rebooted",
                        _ => "lkrun stopped the VM",
                    }, crashed: false);
                }
            }
        }

        private Ending End(int exitCode, string ending, bool crashed)
        {
            if (exitCode != 0 || detached)
            {
                Notice(exitCode == 0 ? $"{name}: {ending}" : ending);
            }
            return new Ending(exitCode, new LastRun(started, DateTimeOffset.UtcNow, exitCode, ending, crashed));
        }

        /// <summary>
        /// Opens the control API once the VM runs, off the path to the engine's start. Failing to open it ends the
        /// run like a failing service: a VM that <c>lkrun stop</c> cannot reach must not run on unseen.
        /// </summary>
        private async Task<(ControlServer? Control, string? Message)> OpenControlAsync(IRunningVm vm, HostServices services)
        {
            try
            {
                var control = new RunningVmControl(name, spec, vm, _shutdown, services, started);
                return (await ControlServer.StartAsync(state.Layout.ControlSocket, control, CancellationToken.None), null);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                return (null, $"the control API could not listen on {state.Layout.ControlSocket} ({e.Message})");
            }
        }

        /// <summary>The VM runs: say where, and hand the command's terminal back; from now on lkrun writes to <c>lkrun.log</c>.</summary>
        private void Detach(HostServices services)
        {
            var address = services.Attachments.Network?.Address;
            Notice($"{name} is running in the background: state dir {state.Path}{(address is null ? "" : $", guest address {address}")}");
            NoticeLog.Current?.Dispose();
            Detachment.HandOver(state.Layout.LkrunLog, RunningReport);
        }

        private Stream OpenConsoleOutput()
        {
            if (spec.Console.Mode == ConsoleMode.Terminal && !detached)
            {
                return TerminalSession.OpenStandardOutput();
            }
            if (!detached)
            {
                Notice($"console output goes to {state.Layout.ConsoleLog}");
            }
            return new FileStream(state.Layout.ConsoleLog, FileMode.Create, FileAccess.Write, FileShare.Read);
        }

        private void OnConsoleCommand(ConsoleCommand command)
        {
            switch (command)
            {
                case ConsoleCommand.StopVm:
                    _shutdown.StopHard("Ctrl-A x");
                    break;
                case ConsoleCommand.PowerButton when _vm is { } vm:
                    _ = vm.PressPowerButtonAsync(CancellationToken.None);
                    break;
            }
        }

        /// <summary>
        /// Nobody reads the console any more (the pipe's reader ended, as with <c>lkrun run ... | grep -m1 ...</c>):
        /// like a hang-up, that asks for a clean shutdown. A console log that cannot be written only says so.
        /// </summary>
        private void OnConsoleOutputLost(IOException error)
        {
            if (spec.Console.Mode == ConsoleMode.Terminal && !detached)
            {
                Notice($"the console output was closed ({error.Message}); shutting the VM down");
                _shutdown.OnConsoleLost();
            }
            else
            {
                Notice($"writing {StateLayout.ConsoleLogName} failed ({error.Message}); the rest of the console is not recorded");
            }
        }

        private static void IgnoreSignal(PosixSignalContext context) => context.Cancel = true;
    }

    /// <summary>
    /// While a detached lkrun still reports to the command that started it, its notices also go to
    /// <c>lkrun.log</c>, so the log tells the whole run; after the hand-over stderr is the log itself.
    /// </summary>
    private sealed class NoticeLog : IDisposable
    {
        private readonly StreamWriter _writer;

        private NoticeLog(StreamWriter writer) => _writer = writer;

        public static NoticeLog? Current { get; private set; }

        public static NoticeLog Open(string path)
        {
            Current = new NoticeLog(new StreamWriter(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true });
            return Current;
        }

        public void Write(string line)
        {
            lock (_writer)
            {
                _writer.Write(line);
            }
        }

        public void Dispose()
        {
            if (Current == this)
            {
                Current = null;
            }
            lock (_writer)
            {
                _writer.Dispose();
            }
        }
    }
}
