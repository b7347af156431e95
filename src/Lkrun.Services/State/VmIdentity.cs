namespace Lkrun.Services.State;

/// <summary>
/// The VM's UUID, kept in <c>vpnkit.uuid</c> (upstream's name) so that one state dir is one VM across runs: the
/// guest sees it as its DMI product UUID and its metadata instance-id, and the network leases its address by it.
/// </summary>
public static class VmIdentity
{
    public static Guid LoadOrCreate(StateDirectory state)
    {
        if (TryLoad(state.Path) is { } existing)
        {
            return existing;
        }
        var uuid = Guid.NewGuid();
        File.WriteAllText(state.TrackCreated(state.Layout.Uuid), uuid.ToString() + "\n");
        return uuid;
    }

    /// <summary>The identity recorded in <paramref name="stateDirectory"/>, or null when it has none that reads as one.</summary>
    public static Guid? TryLoad(string stateDirectory)
    {
        try
        {
            return Guid.TryParse(File.ReadAllText(new StateLayout(stateDirectory).Uuid).Trim(), out var identity) ? identity : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
