namespace Lkrun.Services.State;

/// <summary>
/// The VM's UUID, kept in <c>vpnkit.uuid</c> (upstream's name) so that one state dir is one VM across runs: the
/// guest sees it as its DMI product UUID and its metadata instance-id, and the network leases its address by it.
/// </summary>
public static class VmIdentity
{
    public const string UuidFileName = "vpnkit.uuid";

    public static Guid LoadOrCreate(StateDirectory state)
    {
        var file = state.PathOf(UuidFileName);
        if (File.Exists(file) && Guid.TryParse(File.ReadAllText(file).Trim(), out var existing))
        {
            return existing;
        }
        var uuid = Guid.NewGuid();
        File.WriteAllText(state.TrackCreated(file), uuid.ToString() + "\n");
        return uuid;
    }
}
