using Lkrun.Services.State;

namespace Lkrun.Cli;

/// <summary>A VM named on the command line of <c>stop</c>, <c>console</c>, <c>logs</c> or <c>rm</c>: by its name, or by its state dir.</summary>
public sealed record VmTarget(string? Name, string StateDirectory)
{
    public StateLayout Layout => new(StateDirectory);

    /// <summary>How messages name it: by name when it has one.</summary>
    public string Label => Name ?? StateDirectory;

    /// <summary>
    /// A registered name first, then a path to a state dir (one lkrun has used: it holds a lock file or an
    /// identity). A <see cref="VmTargetException"/> when it is neither.
    /// </summary>
    public static VmTarget Resolve(string nameOrStateDirectory, VmRegistry registry)
    {
        if (registry.FindByName(nameOrStateDirectory) is { } named)
        {
            return new VmTarget(named.Name, named.StateDirectory);
        }
        var path = Path.GetFullPath(nameOrStateDirectory);
        var layout = new StateLayout(path);
        if (Directory.Exists(path) && (File.Exists(layout.Lock) || File.Exists(layout.Uuid)))
        {
            return new VmTarget(registry.FindByStateDirectory(path)?.Name, path);
        }
        throw new VmTargetException($"{nameOrStateDirectory}: no VM has this name, and it is not a state dir; lkrun ps lists the VMs");
    }
}

/// <summary>The command line names no VM lkrun knows.</summary>
public sealed class VmTargetException(string message) : Exception(message);
