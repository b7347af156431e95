using Lkrun.Spec;
using Lkrun.Spec.LinuxKit;

namespace Lkrun.Spec.Tests.LinuxKit;

public sealed class LinuxKitImageTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-image-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Prefix => Path.Combine(_dir, "img");

    private void Create(params string[] suffixes)
    {
        foreach (var suffix in suffixes)
        {
            File.WriteAllText(Prefix + suffix, suffix == "-cmdline" ? "console=ttyS0 quiet\n" : "x");
        }
    }

    [Fact]
    public void Kernel_initrd_is_the_default()
    {
        Create("-kernel", "-initrd.img", "-cmdline", "-squashfs.img");
        var boot = Assert.IsType<KernelInitrdBoot>(LinuxKitImage.Locate(Prefix, BootRequest.Detect));
        Assert.Equal(Prefix + "-initrd.img", boot.Initrd);
        Assert.Equal("console=ttyS0 quiet", boot.Cmdline);
    }

    [Fact]
    public void Squashfs_is_detected_when_there_is_no_initrd()
    {
        Create("-kernel", "-squashfs.img", "-cmdline");
        Assert.IsType<KernelSquashfsBoot>(LinuxKitImage.Locate(Prefix, BootRequest.Detect));
    }

    [Fact]
    public void Squashfs_can_be_forced()
    {
        Create("-kernel", "-initrd.img", "-squashfs.img", "-cmdline");
        Assert.IsType<KernelSquashfsBoot>(LinuxKitImage.Locate(Prefix, BootRequest.Detect with { Squashfs = true }));
    }

    [Theory]
    [InlineData("img")]
    [InlineData("img.iso")]
    public void Iso_prefix_may_end_in_iso(string prefix)
    {
        Create(".iso");
        var boot = Assert.IsType<IsoBoot>(LinuxKitImage.Locate(Path.Combine(_dir, prefix), BootRequest.Detect with { Iso = true, Uefi = true }));
        Assert.Equal(Prefix + ".iso", boot.Iso);
        Assert.True(boot.Uefi);
    }

    [Fact]
    public void Missing_files_are_named_and_exit_1()
    {
        Create("-kernel", "-cmdline");
        var error = Assert.Throws<SpecException>(() => LinuxKitImage.Locate(Prefix, BootRequest.Detect));
        Assert.Contains(Prefix + "-initrd.img", error.Message);
        Assert.DoesNotContain(Prefix + "-kernel,", error.Message.Split('(')[0]);
        Assert.Equal(1, error.ExitCode);
    }

    [Fact]
    public void Two_boot_methods_are_refused()
    {
        Create("-kernel", "-initrd.img", "-cmdline", "-squashfs.img", ".iso");
        var error = Assert.Throws<SpecException>(() => LinuxKitImage.Locate(Prefix, BootRequest.Detect with { Squashfs = true, Iso = true }));
        Assert.Contains("-squashfs and -iso", error.Message);
        Assert.Equal(2, error.ExitCode);
    }
}
