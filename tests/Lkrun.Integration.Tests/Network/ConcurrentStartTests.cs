using System.Text.Json;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Network;

/// <summary>
/// Many lkruns started at the same instant share one lease registry: each must get an address of its own, and a
/// registry damaged afterwards is rebuilt from the VMs' own records without losing anyone's address. Its eight VMs
/// take the machine's CPUs, so the class runs alone (the network collection).
/// </summary>
[Collection(nameof(NetworkTests))]
public sealed class ConcurrentStartTests : IDisposable
{
    private const int Vms = 8;

    /// <summary>Eight guests booting at once under software emulation share two CPUs: generous.</summary>
    private static readonly TimeSpan AllBooted = TimeSpan.FromMinutes(10);

    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task Eight_runs_started_at_once_get_eight_addresses_and_boot_and_a_damaged_registry_keeps_them_all()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff");
        var states = Enumerable.Range(0, Vms).Select(i => _scratch[$"state{i}"]).ToArray();
        var runs = states.Select(state => LkrunProcess.Run(state, ["-mem", "256"], image)).ToArray();
        var addresses = new string[Vms];
        try
        {
            for (var i = 0; i < Vms; i++)
            {
                Assert.Equal(0, await runs[i].WaitForExitAsync(AllBooted));
                addresses[i] = (await runs[i].WaitForErrorAsync("^lkrun: guest address (\\S+)$")).Groups[1].Value;
                // The guest's DHCP client took the address: the VM booted on it.
                Assert.Contains($"lkrun-guest: net eth0 {addresses[i]}/24", runs[i].Output);
            }
        }
        finally
        {
            foreach (var run in runs)
            {
                await run.DisposeAsync();
            }
        }
        Assert.Equal(Vms, addresses.Distinct().Count());

        var registry = _scratch["xdg-state/lkrun/leases.json"];
        File.WriteAllText(registry, File.ReadAllText(registry)[..40]);
        // The first VM again: its lease comes back from the rebuilt registry. It is stopped once its address is out.
        await using (var again = LkrunProcess.Run(states[0], ["-mem", "256"], image))
        {
            await again.WaitForErrorAsync($"^lkrun: the lease registry {registry} was damaged \\(.*\\); rebuilt it with the {Vms} leases the VMs recorded$");
            Assert.Equal(addresses[0], (await again.WaitForErrorAsync("^lkrun: guest address (\\S+)$")).Groups[1].Value);
        }
        using var leases = JsonDocument.Parse(File.ReadAllText(registry));
        var kept = leases.RootElement.GetProperty("leases").EnumerateArray()
            .ToDictionary(lease => lease.GetProperty("stateDirectory").GetString()!, lease => lease.GetProperty("address").GetString()!);
        Assert.Equal(states.Zip(addresses).ToDictionary(), kept);
    }
}
