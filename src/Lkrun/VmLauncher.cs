using System.Runtime.InteropServices;
using Lkrun.Engines;
using Lkrun.Services.Console;
using Lkrun.Services.Hosting;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Power;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun;

/// <summary>
/// Runs one VM: the engine prepares its plan and the host services check the host, creating nothing; then the
/// state dir is taken, the services start, the engine starts the VM, and lkrun waits for it to end, turning
/// signals into a clean ACPI shutdown.
/// </summary>
public static class VmLauncher
{
    public static async Task<int> RunAsync(VmSpec spec, CancellationToken cancellation)
    {
        IVmPlan plan;
        HostPreflight preflight;
        StateDirectory state;
        try
        {
            plan = EngineFactory.For(spec.Engine).Prepare(spec);
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
                state = StateDirectory.Acquire(spec.StateDirectory);
            }
            catch (Exception e) when (e is StateDirectoryException or IOException or UnauthorizedAccessException)
            {
                return Fail(e is StateDirectoryException ? e.Message : $"state dir {spec.StateDirectory}: {e.Message}", 1);
            }
            using (state)
            {
                foreach (var notice in plan.Notices)
                {
                    Notice(notice);
                }
                return await RunInStateDirectoryAsync(spec, plan, preflight, state, cancellation);
            }
        }
    }

    private static async Task<int> RunInStateDirectoryAsync(
        VmSpec spec, IVmPlan plan, HostPreflight preflight, StateDirectory state, CancellationToken cancellation)
    {
        var interactive = spec.Console.Mode == ConsoleMode.Terminal && TerminalSession.IsInteractive;
        var shutdown = new ShutdownRequests(spec.StopTimeout);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, shutdown.OnSignal);
        using var onHangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, shutdown.OnSignal);
        // On an interactive console Ctrl-C is a key for the guest; otherwise it asks for a clean shutdown.
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, interactive ? IgnoreSignal : shutdown.OnSignal);

        IRunningVm? vm = null;
        HostServices? services = null;
        try
        {
            var console = new ConsoleSettings(
                OpenConsoleOutput(spec, state.Layout),
                interactive ? TerminalSession.OpenStandardInput() : null,
                command => OnConsoleCommand(command, vm),
                error => OnConsoleOutputLost(error, spec, shutdown));
            services = await HostServices.StartAsync(preflight, state, console, Notice, cancellation);
            vm = await plan.StartAsync(services.Attachments, cancellation);
        }
        catch (Exception e) when (e is IUserError or IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException)
        {
            if (services is not null)
            {
                await services.DisposeAsync();
            }
            state.RollBack();
            return Fail(e.Message, e is IUserError error ? error.ExitCode : 1);
        }

        await using (services)
        await using (vm)
        {
            using var terminal = interactive ? TerminalSession.EnterRawMode() : null;
            shutdown.Attach(vm);
            if (await Task.WhenAny(vm.Exit, services.Failure) == services.Failure)
            {
                await vm.StopHardAsync(CancellationToken.None);
                terminal?.Dispose();
                return Fail($"{await services.Failure}; stopped the VM", 1);
            }
            var exit = await vm.Exit;
            terminal?.Dispose();
            if (await shutdown.OutcomeAsync() == ShutdownOutcome.StoppedHard)
            {
                return Fail($"the guest did not power off within {spec.StopTimeout.TotalSeconds:0.#} s of the power button; stopped it", 1);
            }
            return exit.IsClean ? 0 : Fail(exit.Detail ?? exit.Reason.ToString(), 1);
        }
    }

    private static Stream OpenConsoleOutput(VmSpec spec, StateLayout state)
    {
        if (spec.Console.Mode == ConsoleMode.Terminal)
        {
            return TerminalSession.OpenStandardOutput();
        }
        Notice($"console output goes to {state.ConsoleLog}");
        return new FileStream(state.ConsoleLog, FileMode.Create, FileAccess.Write, FileShare.Read);
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
            Notice($"writing {StateLayout.ConsoleLogName} failed ({error.Message}); the rest of the console is not recorded");
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
}
