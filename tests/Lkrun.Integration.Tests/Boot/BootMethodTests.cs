using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Boot;

/// <summary>The same test guest, booted by each of LinuxKit's output formats.</summary>
public sealed class BootMethodTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    /// <summary>A copy of the guest in the layout of one boot method: only that method's files are present.</summary>
    private string GuestWith(params string[] suffixes)
    {
        var prefix = _scratch["image"];
        foreach (var suffix in suffixes)
        {
            File.CreateSymbolicLink(prefix + suffix, TestImages.Guest + suffix);
        }
        return prefix;
    }

    [Fact]
    public async Task Kernel_squashfs_is_detected_and_mounts_the_squashfs_as_root()
    {
        var image = GuestWith("-kernel", "-squashfs.img");
        File.WriteAllText(image + "-cmdline", "console=ttyS0 lkrun.poweroff");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], image);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: ready", lkrun.Output);
        Assert.Matches(@"lkrun-guest: disk vda \d+ ro", lkrun.Output);
        Assert.Contains("VFS: Mounted root (squashfs filesystem) readonly", lkrun.Output);
    }

    [Fact]
    public async Task Squashfs_forced_with_a_disk_puts_the_root_first_and_the_disk_second()
    {
        var image = GuestWith("-kernel", "-initrd.img", "-squashfs.img");
        File.WriteAllText(image + "-cmdline", "console=ttyS0 lkrun.poweroff");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-squashfs", "-disk", "size=32M"], image);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Matches(@"lkrun-guest: disk vda \d+ ro", lkrun.Output);
        Assert.Contains($"lkrun-guest: disk vdb {32 * 1024 * 1024} rw", lkrun.Output);
    }

    [Theory]
    [InlineData("image")]
    [InlineData("image.iso")]
    public async Task An_efi_iso_boots_through_ovmf_and_keeps_its_own_variables(string prefixName)
    {
        GuestWith(".iso");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "--iso", "--uefi"], _scratch[prefixName]);
        await lkrun.WaitForReadyAsync();
        Assert.True(File.Exists(Path.Combine(_scratch["state"], "efi-vars.fd")));
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
        Assert.Contains("lkrun-guest: shutting down", lkrun.Output);
    }

    [Fact]
    public async Task An_efi_iso_boots_with_the_firmware_fw_names()
    {
        var image = GuestWith(".iso");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-iso", "-uefi", "-fw", "/usr/share/OVMF/OVMF_CODE.fd"], image);
        await lkrun.WaitForReadyAsync();
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
    }

    [Fact]
    public async Task An_iso_without_uefi_boots_through_the_bios_on_qemu()
    {
        var image = GuestWith(".iso");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-iso"], image);
        await lkrun.WaitForReadyAsync();
        Assert.False(File.Exists(Path.Combine(_scratch["state"], "efi-vars.fd")));
        await lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await lkrun.WaitForExitAsync());
    }

    public static TheoryData<string[], string[], string> MissingFiles => new()
    {
        { ["-squashfs"], ["-kernel", "-cmdline"], "-squashfs.img" },
        { ["-squashfs"], ["-squashfs.img", "-cmdline"], "-kernel" },
        { ["-iso", "-uefi"], [], ".iso" },
        { ["-kernel"], ["-kernel", "-cmdline", "-squashfs.img"], "-initrd.img" },
    };

    [Theory]
    [MemberData(nameof(MissingFiles))]
    public async Task The_missing_files_of_the_chosen_method_are_named_and_nothing_is_created(string[] flags, string[] present, string missing)
    {
        var image = _scratch["image"];
        foreach (var suffix in present)
        {
            File.WriteAllText(image + suffix, "x");
        }
        await using var lkrun = LkrunProcess.Run(_scratch["state"], flags, image);
        Assert.Equal(1, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains($"missing {image}{missing}", lkrun.Error);
        Assert.Single(lkrun.Error.TrimEnd('\n').Split('\n'));
        Assert.False(Directory.Exists(_scratch["state"]));
    }

    [Fact]
    public async Task A_firmware_that_does_not_exist_is_refused_before_anything_is_created()
    {
        var image = GuestWith(".iso");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-iso", "-uefi", "-fw", "/nonexistent/OVMF.fd"], image);
        Assert.Equal(1, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains("-fw /nonexistent/OVMF.fd: no such file", lkrun.Error);
        Assert.False(Directory.Exists(_scratch["state"]));
    }
}
