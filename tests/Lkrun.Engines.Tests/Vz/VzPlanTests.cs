using System.Net;
using System.Runtime.InteropServices;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Vz;

/// <summary>The planner's policies, one table each, with the source each follows.</summary>
public class VzPlanTests
{
    private static VzPlan Plan(VmSpec? spec = null, VzHostInputs? host = null) => VzPlanner.Plan(spec ?? VzFixtures.Spec(), host ?? VzFixtures.Host());

    private static List<string> Lines(VzPlan plan) => plan.Steps.Select(step => PlanText.Line(step)[5..]).ToList();

    private static T Step<T>(VzPlan plan, Func<T, bool> match)
        where T : VzStep => plan.Steps.OfType<T>().Single(match);

    private static EngineException Refusal(VmSpec? spec = null, VzHostInputs? host = null) => Assert.Throws<EngineException>(() => Plan(spec, host));

    /// <summary>linuxkit appends console=hvc0 to the image's cmdline; kernel+squashfs adds root=/dev/vda before it.</summary>
    [Theory]
    [InlineData("console=ttyS0 quiet", false, "console=ttyS0 quiet console=hvc0")]
    [InlineData("console=ttyS0   quiet\n", false, "console=ttyS0 quiet console=hvc0")]
    [InlineData("", false, "console=hvc0")]
    [InlineData("console=ttyS0", true, "console=ttyS0 root=/dev/vda console=hvc0")]
    public void The_cmdline_gets_console_hvc0_last_as_upstream_appends_it(string cmdline, bool squashfs, string expected)
    {
        BootSource boot = squashfs ? new KernelSquashfsBoot("/k", "/s.img", cmdline) : new KernelInitrdBoot("/k", "/i.img", cmdline);
        var step = Step<VzSend>(Plan(VzFixtures.Spec(boot)), s => s.Message == "setCommandLine:");
        Assert.Equal(new VzString(expected), Assert.Single(step.Arguments));
        Assert.Contains("run_virtualizationframework_darwin_cgo_enabled.go", step.Source);
    }

    /// <summary>VZLinuxBootLoader.h: the kernel URL (the inflated copy when the host made one) and the initrd URL.</summary>
    [Fact]
    public void Kernel_initrd_boots_the_inflated_kernel_with_the_initrd()
    {
        var plan = Plan(host: VzFixtures.Host() with { Kernel = "/state/kernel" });
        var lines = Lines(plan);
        Assert.Contains("bootLoader = [[VZLinuxBootLoader alloc] initWithKernelURL:file:///state/kernel]", lines);
        Assert.Contains("[bootLoader setInitialRamdiskURL:file:///img/demo-initrd.img]", lines);
        Assert.Contains("[configuration setBootLoader:bootLoader]", lines);
        Assert.DoesNotContain(plan.Steps, step => step is VzCreate { Class: "VZEFIBootLoader" });
    }

    /// <summary>Code-Hex/vz example/linux: the squashfs is the first disk, read-only, and the guest's /dev/vda.</summary>
    [Fact]
    public void Kernel_squashfs_puts_the_root_first_read_only()
    {
        var spec = VzFixtures.Spec(new KernelSquashfsBoot("/img/k", "/img/root.img", "")) with { Disks = new([new DiskSpec("/d.raw", null, DiskFormat.Raw)]) };
        var lines = Lines(Plan(spec));
        Assert.Contains("root.attachment = [[VZDiskImageStorageDeviceAttachment alloc] initWithURL:file:///img/root.img readOnly:YES error:&error]", lines);
        Assert.Contains("root = [[VZVirtioBlockDeviceConfiguration alloc] initWithAttachment:root.attachment]", lines);
        Assert.Contains("storageDevices = @[root, disk0]", lines);
    }

    /// <summary>VZEFIVariableStore.h: create the store once (never over a file), then reuse it with initWithURL:.</summary>
    [Theory]
    [InlineData(false, "variableStore = [[VZEFIVariableStore alloc] initCreatingVariableStoreAtURL:file:///state/efi-variable-store options:0 error:&error]")]
    [InlineData(true, "variableStore = [[VZEFIVariableStore alloc] initWithURL:file:///state/efi-variable-store]")]
    public void Efi_isos_keep_their_own_variable_store(bool exists, string expected)
    {
        var spec = VzFixtures.Spec(new IsoBoot("/img/x.iso", true, null));
        var host = VzFixtures.Host() with { EfiVariableStore = new("/state/efi-variable-store", exists) };
        var lines = Lines(Plan(spec, host));
        Assert.Contains(expected, lines);
        Assert.Contains("bootLoader = [[VZEFIBootLoader alloc] init]", lines);
        Assert.Contains("[bootLoader setVariableStore:variableStore]", lines);
        Assert.Contains("iso = [[VZUSBMassStorageDeviceConfiguration alloc] initWithAttachment:iso.attachment]", lines);
        Assert.Contains("storageDevices = @[iso]", lines);
    }

    /// <summary>VZGenericMachineIdentifier.h: a new identifier is written to the state dir; a kept one is read back.</summary>
    [Fact]
    public void The_machine_identifier_is_made_once_then_read_back()
    {
        var first = Lines(Plan());
        Assert.Contains("machineIdentifier = [[VZGenericMachineIdentifier alloc] init]", first);
        Assert.Contains("write [machineIdentifier dataRepresentation] to /state/machine-identifier", first);
        Assert.Contains("[platform setMachineIdentifier:machineIdentifier]", first);

        var kept = Enumerable.Range(1, 16).Select(i => (byte)i).ToArray();
        var again = Plan(host: VzFixtures.Host() with { MachineIdentifier = new("/state/machine-identifier", kept) });
        var create = Step<VzCreate>(again, s => s.Name == "machineIdentifier");
        Assert.Equal("initWithDataRepresentation:", create.Initializer);
        Assert.Equal(new VzData(new(kept)), Assert.Single(create.Arguments));
        Assert.DoesNotContain(again.Steps, step => step is VzSaveData);
    }

    /// <summary>VZGenericPlatformConfiguration.h: machineIdentifier is macOS 13; macOS 12 gets the platform alone.</summary>
    [Fact]
    public void Macos_12_has_no_machine_identifier()
    {
        var lines = Lines(Plan(host: VzFixtures.Host(12)));
        Assert.Contains("platform = [[VZGenericPlatformConfiguration alloc] init]", lines);
        Assert.DoesNotContain(lines, line => line.Contains("MachineIdentifier", StringComparison.Ordinal));
    }

    /// <summary>vfkit's DiskStorageConfig: raw, read-write, Cached + Fsync (Automatic corrupts Linux guests, lima PR #2026), in flag order.</summary>
    [Fact]
    public void Disks_are_raw_read_write_cached_with_fsync_in_flag_order()
    {
        var spec = VzFixtures.Spec() with
        {
            Disks = new([new DiskSpec("/state/disk.raw", 10, DiskFormat.Raw), new DiskSpec("/b.raw", null, DiskFormat.Raw)]),
        };
        var plan = Plan(spec, VzFixtures.Host() with { MetadataIso = "/state/data.iso" });
        var disk = Step<VzCreate>(plan, s => s.Name == "disk0.attachment");
        Assert.Equal("initWithURL:readOnly:cachingMode:synchronizationMode:error:", disk.Initializer);
        Assert.Equal<VzArgument>(
            [new VzFileUrl("/state/disk.raw"), new VzBool(false), new VzInteger(2, "Cached"), new VzInteger(2, "Fsync")],
            disk.Arguments);
        Assert.Contains("crc-org/vfkit", disk.Source);
        Assert.Contains("storageDevices = @[disk0, disk1, cidata]", Lines(plan));
    }

    [Fact]
    public void Qcow2_disks_are_refused_in_one_line()
    {
        var error = Refusal(VzFixtures.Spec() with { Disks = new([new DiskSpec("/x.qcow2", null, DiskFormat.Qcow2)]) });
        Assert.Equal("-disk /x.qcow2: format=qcow2 needs the qemu backend; disks are raw elsewhere", error.Message);
        Assert.Equal(2, error.ExitCode);
    }

    /// <summary>vfkit doc/usage.md: ISOs on USB mass storage from macOS 13; before it, linuxkit's read-only virtio disk.</summary>
    [Theory]
    [InlineData(13, "VZUSBMassStorageDeviceConfiguration")]
    [InlineData(14, "VZUSBMassStorageDeviceConfiguration")]
    [InlineData(12, "VZVirtioBlockDeviceConfiguration")]
    public void The_metadata_cd_is_read_only_on_usb_from_macOS_13(int macOS, string device)
    {
        var plan = Plan(host: VzFixtures.Host(macOS) with { MetadataIso = "/state/data.iso" });
        var lines = Lines(plan);
        Assert.Contains("cidata.attachment = [[VZDiskImageStorageDeviceAttachment alloc] initWithURL:file:///state/data.iso readOnly:YES error:&error]", lines);
        Assert.Contains($"cidata = [[{device} alloc] initWithAttachment:cidata.attachment]", lines);
        Assert.True(plan.Minimum <= new MacOSVersion(macOS));
    }

    /// <summary>
    /// VZFileHandleNetworkDeviceAttachment.h (14.4 SDK): a connected datagram socket; maximumTransmissionUnit is
    /// macOS 13 (vfkit ignores its error on 12), so 12 keeps the default 1500 and the network must hand that out.
    /// </summary>
    [Theory]
    [InlineData(13, 65520)]
    [InlineData(12, 1500)]
    public void Lkruns_network_goes_over_the_datagram_socket_with_the_stable_mac(int macOS, int mtu)
    {
        var plan = Plan(host: VzFixtures.Host(macOS));
        var lines = Lines(plan);
        Assert.Equal(mtu, plan.NetworkMtu);
        Assert.Contains("network.fileHandle = [[NSFileHandle alloc] initWithFileDescriptor:dup(fd 11) closeOnDealloc:YES]", lines);
        Assert.Contains("network.attachment = [[VZFileHandleNetworkDeviceAttachment alloc] initWithFileHandle:network.fileHandle]", lines);
        Assert.Contains($"network.macAddress = [[VZMACAddress alloc] initWithString:@\"{VzFixtures.Mac}\"]", lines);
        Assert.Contains("[network setMACAddress:network.macAddress]", lines);
        Assert.Equal(macOS >= 13, lines.Contains("[network.attachment setMaximumTransmissionUnit:65520]"));
    }

    /// <summary>linuxkit's vmnet mode is Apple's NAT (VZNATNetworkDeviceAttachment); lkrun names it vznat.</summary>
    [Fact]
    public void Vznat_uses_apples_nat_with_the_stable_mac_and_no_lkrun_network()
    {
        var plan = Plan(VzFixtures.Spec() with { Network = new NetworkSpec { Mode = NetworkMode.VzNat } }, VzFixtures.Host() with { NetworkDescriptor = null });
        var lines = Lines(plan);
        Assert.Contains("network.attachment = [[VZNATNetworkDeviceAttachment alloc] init]", lines);
        Assert.Contains("[network setMACAddress:network.macAddress]", lines);
        Assert.Null(plan.NetworkMtu);
        Assert.DoesNotContain(lines, line => line.Contains("NSFileHandle", StringComparison.Ordinal) && line.Contains("fd 11", StringComparison.Ordinal));
    }

    [Fact]
    public void Networking_none_has_no_network_device()
    {
        var plan = Plan(VzFixtures.Spec() with { Network = new NetworkSpec { Mode = NetworkMode.None } }, VzFixtures.Host() with { NetworkDescriptor = null, MacAddress = null });
        Assert.DoesNotContain(plan.Steps, step => step.Selector == "setNetworkDevices:");
        Assert.Null(plan.NetworkMtu);
    }

    public static TheoryData<string, Func<VmSpec, VmSpec>> RefusedNetworks => new()
    {
        { "-networking vpnkit: not available with the virtualization.framework backend; use default, vznat or none", s => s with { Network = new NetworkSpec { Mode = NetworkMode.Vpnkit } } },
        { "-networking docker-for-mac: not available with the virtualization.framework backend; use default, vznat or none", s => s with { Network = new NetworkSpec { Mode = NetworkMode.DockerForMac } } },
    };

    [Theory]
    [MemberData(nameof(RefusedNetworks))]
    public void Networks_this_backend_cannot_give_are_refused(string expected, Func<VmSpec, VmSpec> change)
    {
        var error = Refusal(change(VzFixtures.Spec()));
        Assert.Equal(expected, error.Message);
        Assert.Equal(2, error.ExitCode);
    }

    /// <summary>linuxkit always adds vsock, entropy and a traditional balloon.</summary>
    [Fact]
    public void Vsock_entropy_and_balloon_are_always_there()
    {
        var lines = Lines(Plan(VzFixtures.Spec() with { Network = new NetworkSpec { Mode = NetworkMode.None } }));
        Assert.Contains("[configuration setSocketDevices:socketDevices]", lines);
        Assert.Contains("entropy = [[VZVirtioEntropyDeviceConfiguration alloc] init]", lines);
        Assert.Contains("balloon = [[VZVirtioTraditionalMemoryBalloonDeviceConfiguration alloc] init]", lines);
    }

    /// <summary>VZFileHandleSerialPortAttachment.h: a nil reading handle is a console with no input.</summary>
    [Fact]
    public void A_console_without_input_reads_nothing()
    {
        var lines = Lines(Plan(host: VzFixtures.Host() with { Console = new(null, 7) }));
        Assert.Contains("console.attachment = [[VZFileHandleSerialPortAttachment alloc] initWithFileHandleForReading:nil fileHandleForWriting:console.output]", lines);
        Assert.DoesNotContain(lines, line => line.StartsWith("console.input", StringComparison.Ordinal));
    }

    /// <summary>VZVirtioFileSystemDeviceConfiguration.h: validateTag:error: before initWithTag:, which raises for a bad tag.</summary>
    [Fact]
    public void Shares_check_their_tag_before_making_the_device()
    {
        var spec = VzFixtures.Spec() with { SharedDirectories = new([new SharedDirectorySpec("/srv/a", "data", true)]) };
        var lines = Lines(Plan(spec));
        var check = lines.IndexOf("check [VZVirtioFileSystemDeviceConfiguration validateTag:@\"data\" error:&error]");
        var device = lines.IndexOf("share0 = [[VZVirtioFileSystemDeviceConfiguration alloc] initWithTag:@\"data\"]");
        Assert.InRange(check, 0, device - 1);
        Assert.Contains("share0.directory = [[VZSharedDirectory alloc] initWithURL:file:///srv/a readOnly:YES]", lines);
        Assert.Contains("[configuration setDirectorySharingDevices:directorySharingDevices]", lines);
    }

    [Fact]
    public void Without_shares_there_is_no_sharing_device()
    {
        Assert.DoesNotContain(Plan().Steps, step => step.Selector == "setDirectorySharingDevices:");
    }

    [Fact]
    public void The_configuration_is_validated_before_the_vm_is_made()
    {
        var steps = Plan().Steps;
        Assert.Equal("validateWithError:", steps[^2].Selector);
        Assert.Equal("vm = [[VZVirtualMachine alloc] initWithConfiguration:configuration queue:<vm queue>]", PlanText.Line(steps[^1])[5..]);
    }

    public static TheoryData<int, Func<VmSpec, VmSpec>, string> VersionRefusals => new()
    {
        { 11, s => s, "the virtualization.framework backend needs macOS 12 or newer; this Mac runs 11" },
        { 12, s => s with { Boot = new IsoBoot("/x.iso", true, null) }, "-iso --uefi: needs macOS 13 or newer with the virtualization.framework backend; this Mac runs 12" },
    };

    /// <summary>macOS 12 overall (forced stop, caching modes, virtio-fs), 13 for EFI (VZEFIBootLoader.h).</summary>
    [Theory]
    [MemberData(nameof(VersionRefusals))]
    public void Older_macOS_is_refused_in_one_line(int macOS, Func<VmSpec, VmSpec> change, string expected)
    {
        var error = Refusal(change(VzFixtures.Spec()), VzFixtures.Host(macOS) with { EfiVariableStore = new("/s", false) });
        Assert.Equal(expected, error.Message);
        Assert.Equal(2, error.ExitCode);
    }

    /// <summary>vfkit pkg/vf/bootloader.go: on arm64 the kernel must be an uncompressed Image (ARM\x64 at 0x38); x86_64 is not checked.</summary>
    [Fact]
    public void Arm64_needs_an_uncompressed_image()
    {
        var gzip = new byte[64];
        gzip[0] = 0x1f;
        gzip[1] = 0x8b;
        var error = Refusal(host: VzFixtures.Host() with { KernelHeader = gzip });
        Assert.Equal(
            "/img/demo-kernel: not an uncompressed arm64 Image (no ARM\\x64 magic at 0x38); Virtualization.framework boots arm64 kernels only as a plain Image",
            error.Message);
        Assert.Equal(1, error.ExitCode);

        Plan(host: VzFixtures.Host(13, Architecture.X64) with { KernelHeader = gzip });
        Refusal(host: VzFixtures.Host() with { KernelHeader = new byte[0x3b] });
    }

    /// <summary>Every step carries a version no older than its class and selector, and a plan never needs a newer macOS than the host.</summary>
    [Theory]
    [InlineData(12)]
    [InlineData(13)]
    [InlineData(15)]
    public void Steps_carry_their_minimum_macOS_and_fit_the_host(int macOS)
    {
        var spec = VzFixtures.Spec() with
        {
            Disks = new([new DiskSpec("/d.raw", null, DiskFormat.Raw)]),
            SharedDirectories = new([new SharedDirectorySpec("/srv", "virtiofs0", false)]),
        };
        var plan = Plan(spec, VzFixtures.Host(macOS) with { MetadataIso = "/state/data.iso" });
        Assert.True(plan.Minimum <= new MacOSVersion(macOS));
        foreach (var step in plan.Steps)
        {
            Assert.True(step.Minimum >= VzCatalogue.Selector(step.Selector!).Minimum, PlanText.Line(step));
            if (step is VzCreate create)
            {
                Assert.True(step.Minimum >= VzCatalogue.Class(create.Class).Minimum, PlanText.Line(step));
            }
            Assert.False(string.IsNullOrWhiteSpace(step.Source));
            Assert.False(string.IsNullOrWhiteSpace(step.Subject));
        }
    }
}
