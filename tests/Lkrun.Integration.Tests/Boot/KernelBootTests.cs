using System.IO.Compression;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Boot;

public sealed class KernelBootTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task A_gzip_compressed_kernel_boots()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff", "gz");
        File.Delete(image + "-kernel");
        using (var source = File.OpenRead(TestImages.Guest + "-kernel"))
        using (var gzip = new GZipStream(File.Create(image + "-kernel"), CompressionLevel.Fastest))
        {
            source.CopyTo(gzip);
        }
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], image);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: ready", lkrun.Output);
        Assert.True(File.Exists(Path.Combine(_scratch["state"], "kernel")));
    }

    [Fact]
    public async Task The_demo_image_boots_on_debians_kernel_with_its_modules()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Demo, "lkrun.poweroff");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "512"], image);
        Assert.Equal(0, await lkrun.WaitForExitAsync(TimeSpan.FromMinutes(3)));
        Assert.Contains("lkrun-guest: ready", lkrun.Output);
        Assert.DoesNotContain("failed to load", lkrun.Output);
    }

    [Fact]
    public async Task Cpus_and_memory_reach_the_guest()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-cpus", "2", "-mem", "300"], image);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: cpus 2", lkrun.Output);
        // MemTotal leaves out what the firmware and the kernel image keep.
        var memory = int.Parse(System.Text.RegularExpressions.Regex.Match(lkrun.Output, "lkrun-guest: memory (\\d+) MiB").Groups[1].Value);
        Assert.InRange(memory, 240, 300);
    }
}
