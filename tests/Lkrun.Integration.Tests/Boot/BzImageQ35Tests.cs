using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Boot;

/// <summary>
/// The classic path, kept covered now that the default is PVH on microvm: the bzImage as it is, decompressed by
/// the guest, on q35 with PCI devices and firmware.
/// </summary>
public sealed class BzImageQ35Tests : IDisposable
{
    private static readonly string[] BzImageEntry = ["-kernel-entry", "bzimage"];

    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task A_bzimage_boots_on_q35_with_every_device_and_stops_on_the_power_button()
    {
        var data = "{\"bzimage\": true}";
        await using var lkrun = LkrunProcess.Run(
            _scratch["state"], ["-mem", "256", "-disk", "size=16M", "-data", data, "-vsock-ports", "5000", .. BzImageEntry], TestImages.Guest);
        await lkrun.WaitForReadyAsync();
        var argv = (await File.ReadAllTextAsync($"/proc/{await lkrun.QemuPidAsync()}/cmdline", TestContext.Current.CancellationToken)).TrimEnd('\0').Split('\0');
        Assert.StartsWith("q35", argv[Array.IndexOf(argv, "-machine") + 1]);
        Assert.Equal(TestImages.Guest + "-kernel", argv[Array.IndexOf(argv, "-kernel") + 1]);
        Assert.Contains($"lkrun-guest: disk vda {16 * 1024 * 1024} rw", lkrun.Output);
        Assert.Contains("lkrun-guest: metadata user-data", lkrun.Output);
        Assert.Contains("lkrun-guest: vsock cid 3", lkrun.Output);
        Assert.Matches("lkrun-guest: uuid [0-9a-f-]{36}", lkrun.Output);
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: shutting down", lkrun.Output);
    }

    [Fact]
    public async Task A_bzimage_with_a_squashfs_root_keeps_the_disk_order_on_q35()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-squashfs", "-disk", "size=32M", .. BzImageEntry], image);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Matches(@"lkrun-guest: disk vda \d+ ro", lkrun.Output);
        Assert.Contains($"lkrun-guest: disk vdb {32 * 1024 * 1024} rw", lkrun.Output);
    }
}
