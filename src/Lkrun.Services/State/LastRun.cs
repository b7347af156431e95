using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lkrun.Services.State;

/// <summary>
/// How a VM's last run ended, written by its lkrun as it exits (<c>last-run.json</c>), so that <c>lkrun stop</c>
/// and <c>lkrun ps</c> can say it after the process is gone. <paramref name="Crashed"/> is set when the VM
/// itself failed (QEMU died, the guest panicked), as opposed to a shutdown, clean or hard.
/// </summary>
public sealed record LastRun(DateTimeOffset StartedAt, DateTimeOffset EndedAt, int ExitCode, string Ending, bool Crashed)
{
    public void Write(StateLayout layout)
    {
        var temporary = layout.LastRun + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(this, StateJson.Default.LastRun));
        File.Move(temporary, layout.LastRun, overwrite: true);
    }

    /// <summary>The record in <paramref name="layout"/>'s dir, or null when there is none that reads as one.</summary>
    public static LastRun? TryRead(StateLayout layout)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(layout.LastRun), StateJson.Default.LastRun);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }
}

public enum VmState
{
    /// <summary>An lkrun holds the state dir: the VM is starting, running or stopping.</summary>
    Running,

    /// <summary>The last run ended, cleanly or not, and its lkrun said how.</summary>
    Stopped,

    /// <summary>The VM failed, or its lkrun was killed and could not say how the VM ended.</summary>
    Crashed,
}

/// <summary>
/// Whether a VM runs, decided by the state dir's lock, which the kernel drops when lkrun dies however it dies: a
/// pid alone could belong to another process by now.
/// </summary>
public sealed record VmStatus(VmState State, int? Pid, LastRun? LastRun)
{
    public static VmStatus Of(string stateDirectory)
    {
        var layout = new StateLayout(stateDirectory);
        if (StateDirectory.IsHeld(stateDirectory))
        {
            return new VmStatus(VmState.Running, StateDirectory.HolderPid(stateDirectory), null);
        }
        // lkrun removes its pid file as it exits; one left behind belonged to an lkrun that was killed.
        if (StateDirectory.HolderPid(stateDirectory) is { } killed)
        {
            return new VmStatus(VmState.Crashed, killed, null);
        }
        var lastRun = LastRun.TryRead(layout);
        return new VmStatus(lastRun is { Crashed: true } ? VmState.Crashed : VmState.Stopped, null, lastRun);
    }

    public string Word => State switch
    {
        VmState.Running => "running",
        VmState.Stopped => "stopped",
        _ => "crashed",
    };
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(LastRun))]
[JsonSerializable(typeof(VmRegistryFile))]
internal sealed partial class StateJson : JsonSerializerContext;
