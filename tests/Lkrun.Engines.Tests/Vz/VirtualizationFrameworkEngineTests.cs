using Lkrun.Engines.Tests.Qemu;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Vz;

/// <summary>The Virtualization.framework engine's own rules, which apply before it looks at the host.</summary>
public class VirtualizationFrameworkEngineTests
{
    private static VmSpec Spec(BootSource? boot = null) => QemuCommandLineTests.Spec(boot) with { Engine = new VirtualizationFrameworkEngineSpec() };

    private static Exception PrepareFails(VmSpec spec) => Assert.ThrowsAny<Exception>(() => EngineFactory.For(spec.Engine).Prepare(spec));

    [Fact]
    public void Isos_boot_through_efi_only()
    {
        var error = Assert.IsType<SpecException>(PrepareFails(Spec(new IsoBoot("/x.iso", Uefi: false, null))));
        Assert.Equal((2, "-iso: the virtualization.framework backend boots ISOs through EFI only; add --uefi"), (error.ExitCode, error.Message));
    }

    [Fact]
    public void Disks_are_raw()
    {
        var error = Assert.IsType<SpecException>(PrepareFails(Spec() with { Disks = new([new DiskSpec("/x.qcow2", 10, DiskFormat.Qcow2)]) }));
        Assert.Equal((2, "-disk /x.qcow2: format=qcow2 needs the qemu backend; disks are raw elsewhere"), (error.ExitCode, error.Message));
    }

    [Fact]
    public void Elsewhere_than_macos_the_engine_points_at_qemu()
    {
        Assert.SkipWhen(OperatingSystem.IsMacOS(), "this checks the message on other systems");
        var error = Assert.IsType<EngineException>(PrepareFails(Spec()));
        Assert.Equal(2, error.ExitCode);
        Assert.Contains("needs macOS", error.Message);
    }
}
