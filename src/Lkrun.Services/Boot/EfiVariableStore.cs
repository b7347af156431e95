namespace Lkrun.Services.Boot;

/// <summary>
/// A VM's own EFI variable store in its state dir, copied from the firmware's template on the first boot and kept
/// afterwards, so boot entries a guest writes survive its restarts as they would on a real machine.
/// </summary>
public static class EfiVariableStore
{
    /// <summary>The store's path, copying the template there when the VM has none yet.</summary>
    public static string Prepare(string template, string store)
    {
        if (!File.Exists(store))
        {
            File.Copy(template, store);
        }
        return store;
    }
}
