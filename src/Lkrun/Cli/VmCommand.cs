using System.CommandLine;
using Lkrun.Services.State;

namespace Lkrun.Cli;

/// <summary>What the commands that act on one VM share: the <c>NAME|STATE</c> argument and its resolution.</summary>
internal static class VmCommand
{
    public static Argument<string> TargetArgument() => new("NAME|STATE") { Description = "The VM's name (lkrun ps lists them) or its state dir" };

    /// <summary>Runs <paramref name="action"/> on the VM the argument names; an unknown one is one line and exit code 1.</summary>
    public static async Task<int> OnTargetAsync(string nameOrState, Func<VmTarget, Task<int>> action)
    {
        VmTarget target;
        try
        {
            target = VmTarget.Resolve(nameOrState, VmRegistry.ForCurrentUser());
        }
        catch (Exception e) when (e is VmTargetException or IOException or InvalidDataException or UnauthorizedAccessException)
        {
            return Fail(e.Message, 1);
        }
        return await action(target);
    }

    public static Option<T> Flag<T>(string name, string description, string? valueName = null, string? alias = null)
    {
        var option = new Option<T>("--" + name, "-" + name) { Description = description };
        if (valueName is not null)
        {
            option.HelpName = valueName;
        }
        if (alias is not null)
        {
            option.Aliases.Add(alias);
        }
        return option;
    }

    /// <summary>Waits until no lkrun holds the VM's state dir, that is until its run has ended and said how.</summary>
    public static async Task WaitUntilEndedAsync(VmTarget target, CancellationToken cancellation)
    {
        while (StateDirectory.IsHeld(target.StateDirectory))
        {
            await Task.Delay(PollInterval, cancellation);
        }
    }

    /// <summary>How the VM's last run ended, as one line, and the exit code its lkrun ended with.</summary>
    public static (string Line, int ExitCode) DescribeEnding(VmTarget target)
    {
        var status = VmStatus.Of(target.StateDirectory);
        return status switch
        {
            { State: VmState.Running } => ($"{target.Label} is running", 0),
            { LastRun: { } last } => ($"{target.Label}: {last.Ending}", last.ExitCode),
            { State: VmState.Crashed, Pid: { } pid } => ($"{target.Label}: its lkrun (pid {pid}) was killed before it could say how the VM ended", 1),
            _ => ($"{target.Label} is stopped", 0),
        };
    }

    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    public static int Fail(string message, int exitCode)
    {
        VmLauncher.Notice(message);
        return exitCode;
    }
}
