using Lkrun.Engines.Qemu;
using Lkrun.Services.Boot;
using Lkrun.Services.Hosting;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Qemu;

/// <summary><c>-virtiofs</c> shares on QEMU: a vhost-user-fs device per share, connected to its virtiofsd's socket.</summary>
public sealed class QemuVirtiofsTests
{
    private static readonly QemuHost Tcg = new("/usr/bin/qemu-system-x86_64", "tcg", TscKhz: 2_445_432);

    private static VmSpec Spec(params SharedDirectorySpec[] shares) => QemuCommandLineTests.Spec() with { SharedDirectories = new(shares) };

    private static VmAttachments Attachments(params SharedDirectoryAttachment[] shares) => QemuCommandLineTests.Attachments() with { SharedDirectories = shares };

    private static readonly SharedDirectoryAttachment[] TwoShares =
        [new("virtiofs0", "/state/virtiofs0.sock"), new("code", "/state/virtiofs1.sock")];

    private static List<string> ValuesOf(IReadOnlyList<string> args, string option) =>
        args.Select((arg, i) => (arg, i)).Where(p => p.arg == option).Select(p => args[p.i + 1]).ToList();

    private static IReadOnlyList<string> Argv(QemuMachine machine, params SharedDirectoryAttachment[] shares) =>
        QemuCommandLine.Build(Spec(), Attachments(shares), Tcg, machine);

    public static TheoryData<QemuMachine, string[]> Devices => new()
    {
        { QemuMachine.Q35, ["vhost-user-fs-pci,chardev=fs0,tag=virtiofs0", "vhost-user-fs-pci,chardev=fs1,tag=code"] },
        {
            QemuMachine.Microvm,
            // After the RNG and the virtio console, the transports of the last ones down.
            ["vhost-user-fs-device,chardev=fs0,tag=virtiofs0,bus=virtio-mmio-bus.21", "vhost-user-fs-device,chardev=fs1,tag=code,bus=virtio-mmio-bus.20"]
        },
    };

    [Theory]
    [MemberData(nameof(Devices))]
    public void Each_share_is_a_vhost_user_fs_device_on_its_own_socket_with_its_tag(QemuMachine machine, string[] devices)
    {
        var args = Argv(machine, TwoShares);
        Assert.Equal(devices, ValuesOf(args, "-device").Where(device => device.StartsWith("vhost-user-fs", StringComparison.Ordinal)));
        Assert.Equal(
            ["socket,id=fs0,path=/state/virtiofs0.sock", "socket,id=fs1,path=/state/virtiofs1.sock"],
            ValuesOf(args, "-chardev").Where(chardev => chardev.StartsWith("socket,id=fs", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData(QemuMachine.Q35, "q35,memory-backend=mem0")]
    [InlineData(QemuMachine.Microvm, "microvm,acpi=on,memory-backend=mem0")]
    public void Virtiofsd_reads_guest_ram_so_shares_alone_make_it_a_shared_memfd(QemuMachine machine, string expected)
    {
        var args = Argv(machine, TwoShares[0]);
        Assert.Null(QemuCommandLineTests.Attachments().VsockSocket);
        Assert.Equal([expected], ValuesOf(args, "-machine"));
        Assert.Equal(["memory-backend-memfd,id=mem0,size=512M,share=on"], ValuesOf(args, "-object"));
    }

    [Fact]
    public void No_share_means_no_virtio_fs_device()
    {
        var args = Argv(QemuMachine.Q35);
        Assert.DoesNotContain(ValuesOf(args, "-device"), device => device.Contains("vhost-user-fs", StringComparison.Ordinal));
        Assert.Equal(["q35"], ValuesOf(args, "-machine"));
    }

    [Fact]
    public void Commas_in_the_socket_path_and_the_tag_are_escaped()
    {
        var args = Argv(QemuMachine.Q35, new SharedDirectoryAttachment("a,b", "/state,dir/virtiofs0.sock"));
        Assert.Contains("socket,id=fs0,path=/state,,dir/virtiofs0.sock", ValuesOf(args, "-chardev"));
        Assert.Contains("vhost-user-fs-pci,chardev=fs0,tag=a,,b", ValuesOf(args, "-device"));
    }

    [Fact]
    public void Shares_count_against_microvms_transports_when_the_machine_is_chosen()
    {
        var kernel = new BootKernel("/k", IsPvhElf: true, VirtioMmio: true);
        var fits = Enumerable.Range(0, QemuMachineSelection.MicrovmDiskLimit).Select(i => new SharedDirectorySpec($"/s{i}", $"t{i}", false)).ToArray();
        Assert.Equal(QemuMachine.Microvm, QemuMachineSelection.Choose(Spec(fits), kernel, Tcg));
        var disk = Spec(fits) with { Disks = new([new DiskSpec("/d.raw", null, DiskFormat.Raw)]) };
        Assert.Equal(QemuMachine.Q35, QemuMachineSelection.Choose(disk, kernel, Tcg));
    }
}
