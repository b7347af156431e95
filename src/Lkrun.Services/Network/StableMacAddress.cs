using Lkrun.Services.Network.Packets;
using Lkrun.Services.State;

namespace Lkrun.Services.Network;

/// <summary>
/// The VM's MAC address, kept in the state dir so the guest sees the same interface on every run (a guest that
/// keys its configuration or DHCP client id on the MAC keeps working).
/// </summary>
public static class StableMacAddress
{
    public static MacAddress LoadOrCreate(StateDirectory state)
    {
        var file = state.Layout.Mac;
        if (File.Exists(file) && MacAddress.TryParse(File.ReadAllText(file).Trim(), out var existing) && !existing.IsMulticast)
        {
            return existing;
        }
        var created = MacAddress.NewLocallyAdministered();
        File.WriteAllText(state.TrackCreated(file), created + "\n");
        return created;
    }
}
