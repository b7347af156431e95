using System.Text.RegularExpressions;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Run;

public sealed class StateDirectoryTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task A_state_dir_in_use_is_refused_at_once_and_left_alone()
    {
        await using var first = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest);
        await first.WaitForReadyAsync();
        var pid = await first.LkrunPidAsync();

        await using var second = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest);
        Assert.Equal(1, await second.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains($"is in use by another lkrun (pid {pid})", second.Error);

        // The first VM is unharmed and still stops cleanly.
        await first.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await first.WaitForExitAsync());
    }

    /// <summary>The VM's UUID reaches the guest as its DMI product UUID, which only q35 has: microvm's firmware has no SMBIOS.</summary>
    private static readonly string[] Q35 = ["-machine", "q35"];

    [Fact]
    public async Task A_state_dir_left_by_a_killed_lkrun_is_reused_and_keeps_the_vm_identity()
    {
        string uuid;
        await using (var crashed = LkrunProcess.Run(_scratch["state"], ["-mem", "256", .. Q35], TestImages.Guest))
        {
            uuid = (await crashed.WaitForOutputAsync("lkrun-guest: uuid (\\S+)")).Groups[1].Value;
            await crashed.WaitForReadyAsync();
            await crashed.SignalAsync(Posix.SIGKILL);
            await crashed.WaitForExitAsync();
        }
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_scratch["state"]));

        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff");
        await using var again = LkrunProcess.Run(_scratch["state"], ["-mem", "256", .. Q35], image);
        Assert.Equal(0, await again.WaitForExitAsync());
        Assert.Contains($"lkrun-guest: uuid {uuid}", again.Output);
    }

    [Fact]
    public async Task Different_vms_have_different_uuids()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff");
        var uuids = new List<string>();
        foreach (var state in new[] { "one", "two" })
        {
            await using var lkrun = LkrunProcess.Run(_scratch[state], ["-mem", "256", .. Q35], image);
            Assert.Equal(0, await lkrun.WaitForExitAsync());
            uuids.Add(Regex.Match(lkrun.Output, "lkrun-guest: uuid (\\S+)").Groups[1].Value);
            Assert.Equal(File.ReadAllText(Path.Combine(_scratch[state], "vpnkit.uuid")).Trim(), uuids[^1], ignoreCase: true);
        }
        Assert.NotEqual(uuids[0], uuids[1]);
    }
}
