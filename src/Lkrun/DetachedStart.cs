using System.Diagnostics;
using System.Runtime.InteropServices;
using Lkrun.Services.Hosting;

namespace Lkrun;

/// <summary>
/// <c>lkrun run --detach</c>. A detached VM is one lkrun process, as in the foreground, that outlives the command:
/// the command starts lkrun again with the same arguments as the VM's own lkrun (<see cref="ChildVariable"/> set),
/// relays what it says on stderr, and returns once it reports on stdout that the VM runs (exit 0), or with its
/// exit code when it ends before that (it says why on stderr, as in the foreground). The VM's lkrun leaves the
/// terminal's session at once, and writes to <c>STATE/lkrun.log</c> once the command has returned. A signal to
/// the waiting command (Ctrl-C) is passed on, so the VM is stopped as it would be in the foreground.
/// </summary>
public static class DetachedStart
{
    /// <summary>Set in the environment of the lkrun that runs a detached VM; no other process sees it.</summary>
    public const string ChildVariable = "LKRUN_DETACHED_RUNNER";

    /// <summary>True in the lkrun that runs a detached VM. It clears the variable, so QEMU does not inherit it.</summary>
    public static bool IsRunner { get; } = TakeRunnerVariable();

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var startInfo = new ProcessStartInfo(Environment.ProcessPath ?? throw new InvalidOperationException("lkrun cannot find its own binary"))
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            startInfo.ArgumentList.Add(arg);
        }
        startInfo.Environment[ChildVariable] = "1";
        using var runner = Process.Start(startInfo)!;
        runner.StandardInput.Close();
        void PassOn(PosixSignalContext context)
        {
            context.Cancel = true;
            Detachment.Terminate(runner.Id);
        }
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, PassOn);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, PassOn);
        using var onHangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, PassOn);

        using var stderr = Console.OpenStandardError();
        await runner.StandardError.BaseStream.CopyToAsync(stderr);
        if (await runner.StandardOutput.ReadLineAsync() == VmLauncher.RunningReport)
        {
            return 0;
        }
        await runner.WaitForExitAsync();
        return runner.ExitCode;
    }

    private static bool TakeRunnerVariable()
    {
        var runner = Environment.GetEnvironmentVariable(ChildVariable) == "1";
        Environment.SetEnvironmentVariable(ChildVariable, null);
        return runner;
    }
}
