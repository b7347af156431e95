using System.CommandLine;
using Lkrun.Services.State;

namespace Lkrun.Cli;

/// <summary>
/// <c>lkrun rm NAME|STATE</c>: deletes a stopped VM's state dir (its identity, disks created from a size, logs)
/// and forgets its name; its network address goes back to the pool. Refused while the VM runs.
/// </summary>
public sealed class RmCommand
{
    private readonly Argument<string> _target = VmCommand.TargetArgument();

    public RmCommand()
    {
        Command = new Command("rm", "Delete a stopped VM: its state dir, its name, its address");
        Command.Arguments.Add(_target);
        Command.SetAction((result, _) => VmCommand.OnTargetAsync(result.GetValue(_target)!, target => Task.FromResult(Remove(target))));
    }

    public Command Command { get; }

    private static int Remove(VmTarget target)
    {
        try
        {
            if (!StateDirectory.TryDelete(target.StateDirectory))
            {
                return VmCommand.Fail($"{target.Label} is running; stop it first (lkrun stop {target.Label})", 1);
            }
            VmRegistry.ForCurrentUser().Remove(target.StateDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            return VmCommand.Fail($"{target.Label}: {e.Message}", 1);
        }
        VmLauncher.Notice($"removed {target.Label} and its state dir {target.StateDirectory}");
        return 0;
    }
}
