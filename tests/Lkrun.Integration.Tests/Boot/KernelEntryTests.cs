using Lkrun.Integration.Tests.Infrastructure;
using Lkrun.Services.Boot;

namespace Lkrun.Integration.Tests.Boot;

/// <summary>
/// How lkrun enters the real kernels: the test kernel (xz payload, PVH, virtio-mmio built in with ACPI) and
/// Debian's cloud kernel (LZ4 payload, PVH, virtio-mmio as a module).
/// </summary>
public sealed class KernelEntryTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    private BootKernel Prepare(string kernel, List<string> notices) =>
        KernelBoot.Prepare(kernel, Lkrun.Spec.KernelEntry.Auto, _scratch["inflated-kernel"], new KernelCache(_scratch["cache"]), notices.Add);

    [Fact]
    public void The_test_kernel_decompresses_to_a_pvh_elf_with_virtio_mmio()
    {
        var notices = new List<string>();
        var image = File.ReadAllBytes(TestImages.Guest + "-kernel");
        var header = BzImageHeader.Parse(image);
        Assert.Equal(PayloadFormat.Xz, KernelPayload.Detect(image.AsSpan(header.Payload)));
        var booted = Prepare(TestImages.Guest + "-kernel", notices);
        Assert.Empty(notices);
        Assert.True(booted.IsPvhElf);
        Assert.True(booted.VirtioMmio);
        Assert.True(ElfKernel.Inspect(File.ReadAllBytes(booted.Path)).HasPvhEntry);
    }

    [Fact]
    public void Debians_cloud_kernel_decompresses_from_lz4_to_a_pvh_elf_without_virtio_mmio()
    {
        var notices = new List<string>();
        var image = File.ReadAllBytes(TestImages.Demo + "-kernel");
        Assert.Equal(PayloadFormat.Lz4, KernelPayload.Detect(image.AsSpan(BzImageHeader.Parse(image).Payload)));
        var booted = Prepare(TestImages.Demo + "-kernel", notices);
        Assert.Empty(notices);
        Assert.True(booted.IsPvhElf);
        Assert.False(booted.VirtioMmio);
    }

    /// <summary>QEMU's command line, read from /proc while the VM runs.</summary>
    private static async Task<string[]> QemuArgvAsync(LkrunProcess lkrun) =>
        (await File.ReadAllTextAsync($"/proc/{await lkrun.QemuPidAsync()}/cmdline", TestContext.Current.CancellationToken)).TrimEnd('\0').Split('\0');

    private static string ValueOf(string[] argv, string option) => argv[Array.IndexOf(argv, option) + 1];

    [Fact]
    public async Task The_default_path_boots_the_cached_elf_on_microvm_and_the_power_button_works()
    {
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-disk", "size=16M"], TestImages.Guest);
        await lkrun.WaitForReadyAsync();
        var argv = await QemuArgvAsync(lkrun);
        Assert.StartsWith("microvm,acpi=on", ValueOf(argv, "-machine"));
        Assert.StartsWith(Path.Combine(LkrunProcess.KernelCacheHome, "lkrun", "kernels") + "/", ValueOf(argv, "-kernel"));
        Assert.EndsWith(KernelCache.KernelSuffix, ValueOf(argv, "-kernel"));
        Assert.Contains($"lkrun-guest: disk vda {16 * 1024 * 1024} rw", lkrun.Output);
        Assert.Contains("lkrun-guest: vsock cid 3", lkrun.Output);
        Assert.Matches("lkrun-guest: net eth0 192\\.168\\.65\\.\\d+/24", lkrun.Output);
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: shutting down", lkrun.Output);
    }

    [Fact]
    public async Task Debians_kernel_boots_through_pvh_on_q35_since_its_virtio_mmio_is_a_module()
    {
        var image = _scratch.ImageWithExtraCmdline(TestImages.Demo, "lkrun.poweroff");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "512"], image);
        var argv = await QemuArgvAsync(lkrun);
        Assert.StartsWith("q35", ValueOf(argv, "-machine"));
        Assert.EndsWith(KernelCache.KernelSuffix, ValueOf(argv, "-kernel"));
        Assert.Equal(0, await lkrun.WaitForExitAsync(TimeSpan.FromMinutes(3)));
        Assert.Contains("lkrun-guest: ready", lkrun.Output);
    }

    [Fact]
    public async Task Pvh_forced_on_a_kernel_without_the_note_fails_naming_the_flag_and_creates_nothing()
    {
        var image = _scratch["image"];
        // A bzImage whose payload is no format lkrun knows.
        var kernel = File.ReadAllBytes(TestImages.Guest + "-kernel");
        var header = BzImageHeader.Parse(kernel);
        kernel.AsSpan(header.PayloadStart, 8).Fill(0xee);
        File.WriteAllBytes(image + "-kernel", kernel);
        File.CreateSymbolicLink(image + "-initrd.img", TestImages.Guest + "-initrd.img");
        File.WriteAllText(image + "-cmdline", "console=ttyS0");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-kernel-entry", "pvh"], image);
        Assert.Equal(1, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        // Besides the line saying that emulation is in software, on hosts without KVM.
        var error = Assert.Single(lkrun.Error.TrimEnd('\n').Split('\n'), line => !line.Contains("/dev/kvm", StringComparison.Ordinal));
        Assert.StartsWith($"lkrun: -kernel-entry pvh: {image}-kernel: unknown payload compression", error);
        Assert.False(Directory.Exists(_scratch["state"]));
    }

    [Fact]
    public async Task An_unknown_payload_falls_back_to_the_bzimage_on_q35_with_one_notice()
    {
        var image = _scratch["image"];
        var kernel = File.ReadAllBytes(TestImages.Guest + "-kernel");
        var header = BzImageHeader.Parse(kernel);
        // The guest's own decompressor cannot read this payload either: lkrun's choice shows on QEMU's command line.
        kernel.AsSpan(header.PayloadStart, 2).Fill(0xee);
        File.WriteAllBytes(image + "-kernel", kernel);
        File.CreateSymbolicLink(image + "-initrd.img", TestImages.Guest + "-initrd.img");
        File.WriteAllText(image + "-cmdline", "console=ttyS0");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], image);
        await lkrun.WaitForErrorAsync("booting the bzImage as it is");
        var argv = await QemuArgvAsync(lkrun);
        Assert.Equal(image + "-kernel", ValueOf(argv, "-kernel"));
        Assert.StartsWith("q35", ValueOf(argv, "-machine"));
        Assert.Single(lkrun.Error.TrimEnd('\n').Split('\n'), line => line.Contains("booting the bzImage"));
    }
}
