using System.Runtime.InteropServices;
using Lkrun.Engines.Tests.Vz.Fakes;
using Lkrun.Engines.Vz;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Services.Hosting;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Vz;

/// <summary>The engine's checks before anything is created, and the host services it asks for.</summary>
public sealed class VirtualizationFrameworkEngineTests : IDisposable
{
    private readonly DirectoryInfo _images = Directory.CreateTempSubdirectory("lkrun-vz-engine-");
    private readonly FakeObjCRuntime _runtime = new();

    public void Dispose()
    {
        _runtime.Dispose();
        _images.Delete(recursive: true);
    }

    private string File(string name, byte[] bytes)
    {
        var path = Path.Combine(_images.FullName, name);
        System.IO.File.WriteAllBytes(path, bytes);
        return path;
    }

    private VmSpec Spec(BootSource? boot = null) => VzFixtures.Spec(boot ?? new KernelInitrdBoot(
        File("kernel", [.. VzFixtures.Arm64Image(), .. new byte[256]]), File("initrd.img", [1, 2, 3]), "console=ttyS0"));

    private IVmPlan Prepare(VmSpec spec, int macOS = 14, Architecture architecture = Architecture.Arm64)
    {
        _runtime.Host = new MacOSVersion(macOS);
        return new VirtualizationFrameworkEngine(new VzHostFacts(new MacOSVersion(macOS), architecture, _ => _runtime), _ => { }).Prepare(spec);
    }

    private EngineException PrepareFails(VmSpec spec, int macOS = 14, Architecture architecture = Architecture.Arm64) =>
        Assert.Throws<EngineException>(() => Prepare(spec, macOS, architecture));

    [Fact]
    public void Elsewhere_than_macos_the_engine_points_at_qemu()
    {
        Assert.SkipWhen(OperatingSystem.IsMacOS(), "this checks the message on other systems");
        var error = Assert.Throws<EngineException>(() => EngineFactory.For(new VirtualizationFrameworkEngineSpec(), _ => { }).Prepare(Spec()));
        Assert.Equal((2, "the virtualization.framework backend needs macOS; on this system use the qemu backend (lkrun run qemu ...)"), (error.ExitCode, error.Message));
    }

    [Fact]
    public void Macos_older_than_12_is_refused()
    {
        var error = PrepareFails(Spec(), macOS: 11);
        Assert.Equal((2, "the virtualization.framework backend needs macOS 12 or newer; this Mac runs 11"), (error.ExitCode, error.Message));
    }

    [Fact]
    public void The_backends_rules_apply_before_anything_is_created()
    {
        var iso = File("demo-efi.iso", [0]);
        Assert.Equal("-iso: the virtualization.framework backend boots ISOs through EFI only; add --uefi",
            PrepareFails(Spec(new IsoBoot(iso, Uefi: false, null))).Message);
        Assert.Equal("-iso --uefi: needs macOS 13 or newer with the virtualization.framework backend; this Mac runs 12",
            PrepareFails(Spec(new IsoBoot(iso, Uefi: true, null)), macOS: 12).Message);
        Assert.Equal("-disk /x.qcow2: format=qcow2 needs the qemu backend; disks are raw elsewhere",
            PrepareFails(Spec() with { Disks = new([new DiskSpec("/x.qcow2", 10, DiskFormat.Qcow2)]) }).Message);
        Assert.StartsWith("-networking vpnkit: not available with the virtualization.framework backend",
            PrepareFails(Spec() with { Network = NetworkSpec.Default with { Mode = NetworkMode.Vpnkit } }).Message);
        Assert.Empty(_images.GetDirectories());
    }

    [Fact]
    public void An_arm64_kernel_that_is_not_an_image_is_refused_on_arm64_only()
    {
        var bzImage = Spec(new KernelInitrdBoot(File("bzImage", new byte[512]), File("initrd.img", [1]), ""));

        Assert.Contains("not an uncompressed arm64 Image", PrepareFails(bzImage).Message);
        Prepare(bzImage, architecture: Architecture.X64);
    }

    [Fact]
    public void A_gzip_kernel_is_checked_once_it_is_inflated()
    {
        var gzip = Spec(new KernelInitrdBoot(File("kernel.gz", [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]), File("initrd.img", [1]), ""));

        Prepare(gzip);
    }

    [Theory]
    [InlineData(NetworkMode.Vmnet, NetworkLink.DatagramSocketPair)]
    [InlineData(NetworkMode.VzNat, null)]
    [InlineData(NetworkMode.None, null)]
    public void The_plan_asks_for_socket_pairs_and_streams(NetworkMode mode, NetworkLink? link)
    {
        var services = Prepare(Spec() with { Network = NetworkSpec.Default with { Mode = mode } }).Services;

        Assert.Equal(new HostServiceNeeds(ConsoleTransport.SocketPair, VsockTransport.Streams, link, X86KernelEntry: null), services);
    }

    [Theory]
    [InlineData(12, 1500)]
    [InlineData(13, 65520)]
    public void Lkrun_hands_out_the_mtu_the_device_takes(int macOS, int mtu) =>
        Assert.Equal(mtu, Prepare(Spec(), macOS).Services.NetworkMtu);
}
