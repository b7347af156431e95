using Lkrun.Engines;
using Lkrun.Engines.Qemu;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Qemu;

public class QemuCommandLineTests
{
    private static readonly Guid Uuid = Guid.Parse("6f1e3c5a-0000-4000-8000-000000000001");

    internal static VmSpec Spec(BootSource? boot = null) => new()
    {
        Name = "demo",
        Boot = boot ?? new KernelInitrdBoot("/img/demo-kernel", "/img/demo-initrd.img", "console=ttyS0 quiet"),
        Cpus = 2,
        MemoryMiB = 512,
        StateDirectory = "/state",
        Engine = new QemuEngineSpec(null, null),
    };

    internal static VmAttachments Attachments() => new()
    {
        Uuid = Uuid,
        SerialConsoleSocket = "/state/ttyS0.sock",
        VirtioConsoleSocket = "/state/hvc0.sock",
        ControlSocket = "/state/qmp.sock",
        StateDirectory = "/state",
    };

    private static readonly QemuHost Tcg = new("/usr/bin/qemu-system-x86_64", "tcg");

    /// <summary>The value following each occurrence of <paramref name="option"/>.</summary>
    private static List<string> ValuesOf(IReadOnlyList<string> args, string option) =>
        args.Select((arg, i) => (arg, i)).Where(p => p.arg == option).Select(p => args[p.i + 1]).ToList();

    [Fact]
    public void Machine_follows_the_spec()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments(), Tcg);
        Assert.Equal(["q35"], ValuesOf(args, "-machine"));
        Assert.Equal(["tcg"], ValuesOf(args, "-accel"));
        Assert.Equal(["max"], ValuesOf(args, "-cpu"));
        Assert.Equal(["2"], ValuesOf(args, "-smp"));
        Assert.Equal(["512"], ValuesOf(args, "-m"));
        Assert.Equal([Uuid.ToString()], ValuesOf(args, "-uuid"));
        Assert.Contains("-no-reboot", args);
        Assert.Contains("-nodefaults", args);
    }

    [Fact]
    public void Kvm_passes_the_host_cpu_through()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments(), Tcg with { Accelerator = "kvm" });
        Assert.Equal(["host"], ValuesOf(args, "-cpu"));
        Assert.Equal(["kvm"], ValuesOf(args, "-accel"));
    }

    [Fact]
    public void Kernel_initrd_boots_with_the_cmdline_as_is()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments(), Tcg);
        Assert.Equal(["/img/demo-kernel"], ValuesOf(args, "-kernel"));
        Assert.Equal(["/img/demo-initrd.img"], ValuesOf(args, "-initrd"));
        Assert.Equal(["console=ttyS0 quiet"], ValuesOf(args, "-append"));
    }

    [Fact]
    public void An_inflated_kernel_replaces_the_image_kernel()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments() with { Kernel = "/state/kernel" }, Tcg);
        Assert.Equal(["/state/kernel"], ValuesOf(args, "-kernel"));
    }

    [Fact]
    public void Both_consoles_and_qmp_connect_to_the_state_dir_sockets()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments(), Tcg);
        Assert.Equal(
            ["socket,id=serial0,path=/state/ttyS0.sock", "socket,id=virtcon0,path=/state/hvc0.sock", "socket,id=qmp0,path=/state/qmp.sock"],
            ValuesOf(args, "-chardev"));
        Assert.Equal(["chardev:serial0"], ValuesOf(args, "-serial"));
        Assert.Contains("virtconsole,chardev=virtcon0,bus=virtio-serial0.0", ValuesOf(args, "-device"));
        Assert.Equal(["chardev=qmp0,mode=control"], ValuesOf(args, "-mon"));
    }

    [Fact]
    public void Commas_in_paths_are_doubled()
    {
        var args = QemuCommandLine.Build(Spec(), Attachments() with { SerialConsoleSocket = "/st,ate/ttyS0.sock" }, Tcg);
        Assert.Contains("socket,id=serial0,path=/st,,ate/ttyS0.sock", args);
    }

    [Fact]
    public void The_same_input_gives_the_same_argv()
    {
        Assert.Equal(QemuCommandLine.Build(Spec(), Attachments(), Tcg), QemuCommandLine.Build(Spec(), Attachments(), Tcg));
    }
}
