using Lkrun.Engines.Qemu;
using Lkrun.Services.Hosting;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Qemu;

/// <summary>The QEMU engine's own rules and what its plan resolves, checked without starting anything.</summary>
public sealed class QemuEngineTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-qemu-engine-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A stand-in binary: Prepare only resolves it.</summary>
    private string Binary
    {
        get
        {
            var path = Path.Combine(_dir, "qemu-system-x86_64");
            File.WriteAllText(path, "");
            return path;
        }
    }

    private VmSpec Spec(NetworkSpec? network = null, string? accelerator = "tcg") => QemuCommandLineTests.Spec() with
    {
        StateDirectory = Path.Combine(_dir, "state"),
        Network = network ?? NetworkSpec.Default,
        Engine = new QemuEngineSpec(Binary, accelerator),
    };

    private IVmPlan Prepare(VmSpec spec) => EngineFactory.For(spec.Engine, _ => { }).Prepare(spec);

    [Theory]
    [InlineData(NetworkMode.Vpnkit, "-networking vpnkit: not available with the qemu backend; use default, vmnet or none")]
    [InlineData(NetworkMode.DockerForMac, "-networking docker-for-mac: not available with the qemu backend; use default, vmnet or none")]
    public void Modes_that_need_vpnkit_are_a_usage_error(NetworkMode mode, string message)
    {
        var error = Assert.Throws<EngineException>(() => Prepare(Spec(NetworkSpec.Default with { Mode = mode })));
        Assert.Equal((2, message), (error.ExitCode, error.Message));
    }

    [Fact]
    public void The_plan_asks_for_the_services_over_qemus_transports_and_creates_nothing()
    {
        var plan = Assert.IsType<QemuPlan>(Prepare(Spec()));
        Assert.Equal(new HostServiceNeeds(ConsoleTransport.ListeningSockets, VsockTransport.VhostUser, QemuNetworkLink.Default, KernelEntry.Auto), plan.Services);
        Assert.Equal("tcg", plan.Host.Accelerator);
        Assert.Empty(plan.Notices);
        Assert.False(Directory.Exists(Path.Combine(_dir, "state")));
    }

    [Fact]
    public void Without_a_network_the_plan_asks_for_none()
    {
        Assert.Null(Prepare(Spec(NetworkSpec.Default with { Mode = NetworkMode.None })).Services.Network);
    }

    [Fact]
    public void Shares_are_served_by_virtiofsd_over_vhost_user_and_no_share_needs_none()
    {
        Assert.Null(Prepare(Spec()).Services.SharedDirectories);
        var spec = Spec() with { SharedDirectories = new([new SharedDirectorySpec(_dir, "virtiofs0", false)]) };
        Assert.Equal(SharedDirectoryTransport.VhostUser, Prepare(spec).Services.SharedDirectories);
    }

    [Fact]
    public void A_missing_binary_is_named()
    {
        var spec = Spec() with { Engine = new QemuEngineSpec(Path.Combine(_dir, "absent"), "tcg") };
        var error = Assert.Throws<EngineException>(() => Prepare(spec));
        Assert.Equal($"-qemu {Path.Combine(_dir, "absent")}: no such file", error.Message);
    }
}
