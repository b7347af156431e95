using System.Net;
using System.Runtime.InteropServices;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Vz;

/// <summary>
/// Whole plans, one line a step, for the three boots. Each snapshot follows linuxkit's
/// run_virtualizationframework_darwin_cgo_enabled.go (console=hvc0, vsock, entropy and balloon always, virtiofs
/// tags), Apple's headers for versions and initializers (VZCatalogue), vfkit for Cached + Fsync disks and ISOs on USB
/// mass storage, and lkrun's QEMU engine for the guest-visible disk order.
/// </summary>
public class VzPlanSnapshotTests
{
    [Fact]
    public void Kernel_initrd_on_macOS_13_arm64_with_lkruns_network()
    {
        Assert.Equal(
            """
            11   configuration = [[VZVirtualMachineConfiguration alloc] init]
            11   [configuration setCPUCount:2]
            11   [configuration setMemorySize:536870912]
            11   bootLoader = [[VZLinuxBootLoader alloc] initWithKernelURL:file:///img/demo-kernel]
            11   [bootLoader setCommandLine:@"console=ttyS0 quiet console=hvc0"]
            11   [bootLoader setInitialRamdiskURL:file:///img/demo-initrd.img]
            11   [configuration setBootLoader:bootLoader]
            12   platform = [[VZGenericPlatformConfiguration alloc] init]
            13   machineIdentifier = [[VZGenericMachineIdentifier alloc] init]
            13   write [machineIdentifier dataRepresentation] to /state/machine-identifier
            13   [platform setMachineIdentifier:machineIdentifier]
            12   [configuration setPlatform:platform]
            10   console.input = [[NSFileHandle alloc] initWithFileDescriptor:dup(fd 10) closeOnDealloc:YES]
            10   console.output = [[NSFileHandle alloc] initWithFileDescriptor:dup(fd 10) closeOnDealloc:YES]
            11   console.attachment = [[VZFileHandleSerialPortAttachment alloc] initWithFileHandleForReading:console.input fileHandleForWriting:console.output]
            11   console = [[VZVirtioConsoleDeviceSerialPortConfiguration alloc] init]
            11   [console setAttachment:console.attachment]
            10   serialPorts = @[console]
            11   [configuration setSerialPorts:serialPorts]
            10   network.fileHandle = [[NSFileHandle alloc] initWithFileDescriptor:dup(fd 11) closeOnDealloc:YES]
            11   network.attachment = [[VZFileHandleNetworkDeviceAttachment alloc] initWithFileHandle:network.fileHandle]
            13   [network.attachment setMaximumTransmissionUnit:65520]
            11   network = [[VZVirtioNetworkDeviceConfiguration alloc] init]
            11   [network setAttachment:network.attachment]
            11   network.macAddress = [[VZMACAddress alloc] initWithString:@"02:00:5e:10:00:01"]
            11   [network setMACAddress:network.macAddress]
            10   networkDevices = @[network]
            11   [configuration setNetworkDevices:networkDevices]
            11   vsock = [[VZVirtioSocketDeviceConfiguration alloc] init]
            10   socketDevices = @[vsock]
            11   [configuration setSocketDevices:socketDevices]
            11   entropy = [[VZVirtioEntropyDeviceConfiguration alloc] init]
            10   entropyDevices = @[entropy]
            11   [configuration setEntropyDevices:entropyDevices]
            11   balloon = [[VZVirtioTraditionalMemoryBalloonDeviceConfiguration alloc] init]
            10   memoryBalloonDevices = @[balloon]
            11   [configuration setMemoryBalloonDevices:memoryBalloonDevices]
            11   check [configuration validateWithError:&error]
            11   vm = [[VZVirtualMachine alloc] initWithConfiguration:configuration queue:<vm queue>]

            """,
            PlanText.Render(VzPlanner.Plan(VzFixtures.Spec(), VzFixtures.Host())));
    }

    [Fact]
    public void Kernel_squashfs_with_disks_and_metadata_on_macOS_12_x64()
    {
        var spec = VzFixtures.Spec(new KernelSquashfsBoot("/img/demo-kernel", "/img/demo-squashfs.img", "console=ttyS0")) with
        {
            Disks = new([new DiskSpec("/state/disk.raw", 1024, DiskFormat.Raw), new DiskSpec("/data/extra.img", null, DiskFormat.Raw)]),
        };
        var host = VzFixtures.Host(12, Architecture.X64) with { MetadataIso = "/state/data.iso", Kernel = "/state/kernel" };
        Assert.Equal(
            """
            11   configuration = [[VZVirtualMachineConfiguration alloc] init]
            11   [configuration setCPUCount:2]
            11   [configuration setMemorySize:536870912]
            11   bootLoader = [[VZLinuxBootLoader alloc] initWithKernelURL:file:///state/kernel]
            11   [bootLoader setCommandLine:@"console=ttyS0 root=/dev/vda console=hvc0"]
            11   [configuration setBootLoader:bootLoader]
            11   root.attachment = [[VZDiskImageStorageDeviceAttachment alloc] initWithURL:file:///img/demo-squashfs.img readOnly:YES error:&error]
            11   root = [[VZVirtioBlockDeviceConfiguration alloc] initWithAttachment:root.attachment]
            12   platform = [[VZGenericPlatformConfiguration alloc] init]
            12   [configuration setPlatform:platform]
            10   console.input = [[NSFileHandle alloc] initWithFileDescriptor:dup(fd 10) closeOnDealloc:YES]
            10   console.output = [[NSFileHandle alloc] initWithFileDescriptor:dup(fd 10) closeOnDealloc:YES]
            11   console.attachment = [[VZFileHandleSerialPortAttachment alloc] initWithFileHandleForReading:console.input fileHandleForWriting:console.output]
            11   console = [[VZVirtioConsoleDeviceSerialPortConfiguration alloc] init]
            11   [console setAttachment:console.attachment]
            10   serialPorts = @[console]
            11   [configuration setSerialPorts:serialPorts]
            12   disk0.attachment = [[VZDiskImageStorageDeviceAttachment alloc] initWithURL:file:///state/disk.raw readOnly:NO cachingMode:2 (Cached) synchronizationMode:2 (Fsync) error:&error]
            11   disk0 = [[VZVirtioBlockDeviceConfiguration alloc] initWithAttachment:disk0.attachment]
            12   disk1.attachment = [[VZDiskImageStorageDeviceAttachment alloc] initWithURL:file:///data/extra.img readOnly:NO cachingMode:2 (Cached) synchronizationMode:2 (Fsync) error:&error]
            11   disk1 = [[VZVirtioBlockDeviceConfiguration alloc] initWithAttachment:disk1.attachment]
            11   cidata.attachment = [[VZDiskImageStorageDeviceAttachment alloc] initWithURL:file:///state/data.iso readOnly:YES error:&error]
            11   cidata = [[VZVirtioBlockDeviceConfiguration alloc] initWithAttachment:cidata.attachment]
            10   storageDevices = @[root, disk0, disk1, cidata]
            11   [configuration setStorageDevices:storageDevices]
            10   network.fileHandle = [[NSFileHandle alloc] initWithFileDescriptor:dup(fd 11) closeOnDealloc:YES]
            11   network.attachment = [[VZFileHandleNetworkDeviceAttachment alloc] initWithFileHandle:network.fileHandle]
            11   network = [[VZVirtioNetworkDeviceConfiguration alloc] init]
            11   [network setAttachment:network.attachment]
            11   network.macAddress = [[VZMACAddress alloc] initWithString:@"02:00:5e:10:00:01"]
            11   [network setMACAddress:network.macAddress]
            10   networkDevices = @[network]
            11   [configuration setNetworkDevices:networkDevices]
            11   vsock = [[VZVirtioSocketDeviceConfiguration alloc] init]
            10   socketDevices = @[vsock]
            11   [configuration setSocketDevices:socketDevices]
            11   entropy = [[VZVirtioEntropyDeviceConfiguration alloc] init]
            10   entropyDevices = @[entropy]
            11   [configuration setEntropyDevices:entropyDevices]
            11   balloon = [[VZVirtioTraditionalMemoryBalloonDeviceConfiguration alloc] init]
            10   memoryBalloonDevices = @[balloon]
            11   [configuration setMemoryBalloonDevices:memoryBalloonDevices]
            11   check [configuration validateWithError:&error]
            11   vm = [[VZVirtualMachine alloc] initWithConfiguration:configuration queue:<vm queue>]

            """,
            PlanText.Render(VzPlanner.Plan(spec, host)));
    }

    [Fact]
    public void Efi_iso_first_boot_on_macOS_13_with_apples_nat_and_shares()
    {
        var spec = VzFixtures.Spec(new IsoBoot("/img/demo-efi.iso", true, null)) with
        {
            Network = new NetworkSpec { Mode = NetworkMode.VzNat },
            SharedDirectories = new([new SharedDirectorySpec("/srv/share", "virtiofs0", false), new SharedDirectorySpec("/srv/logs", "logs", true)]),
        };
        var host = VzFixtures.Host(13) with { MetadataIso = "/state/data.iso", Kernel = null, EfiVariableStore = new("/state/efi-variable-store", false) };
        Assert.Equal(
            """
            11   configuration = [[VZVirtualMachineConfiguration alloc] init]
            11   [configuration setCPUCount:2]
            11   [configuration setMemorySize:536870912]
            13   variableStore = [[VZEFIVariableStore alloc] initCreatingVariableStoreAtURL:file:///state/efi-variable-store options:0 error:&error]
            13   bootLoader = [[VZEFIBootLoader alloc] init]
            13   [bootLoader setVariableStore:variableStore]
            11   [configuration setBootLoader:bootLoader]
            11   iso.attachment = [[VZDiskImageStorageDeviceAttachment alloc] initWithURL:file:///img/demo-efi.iso readOnly:YES error:&error]
            13   iso = [[VZUSBMassStorageDeviceConfiguration alloc] initWithAttachment:iso.attachment]
            12   platform = [[VZGenericPlatformConfiguration alloc] init]
            13   machineIdentifier = [[VZGenericMachineIdentifier alloc] init]
            13   write [machineIdentifier dataRepresentation] to /state/machine-identifier
            13   [platform setMachineIdentifier:machineIdentifier]
            12   [configuration setPlatform:platform]
            10   console.input = [[NSFileHandle alloc] initWithFileDescriptor:dup(fd 10) closeOnDealloc:YES]
            10   console.output = [[NSFileHandle alloc] initWithFileDescriptor:dup(fd 10) closeOnDealloc:YES]
            11   console.attachment = [[VZFileHandleSerialPortAttachment alloc] initWithFileHandleForReading:console.input fileHandleForWriting:console.output]
            11   console = [[VZVirtioConsoleDeviceSerialPortConfiguration alloc] init]
            11   [console setAttachment:console.attachment]
            10   serialPorts = @[console]
            11   [configuration setSerialPorts:serialPorts]
            11   cidata.attachment = [[VZDiskImageStorageDeviceAttachment alloc] initWithURL:file:///state/data.iso readOnly:YES error:&error]
            13   cidata = [[VZUSBMassStorageDeviceConfiguration alloc] initWithAttachment:cidata.attachment]
            10   storageDevices = @[iso, cidata]
            11   [configuration setStorageDevices:storageDevices]
            11   network.attachment = [[VZNATNetworkDeviceAttachment alloc] init]
            11   network = [[VZVirtioNetworkDeviceConfiguration alloc] init]
            11   [network setAttachment:network.attachment]
            11   network.macAddress = [[VZMACAddress alloc] initWithString:@"02:00:5e:10:00:01"]
            11   [network setMACAddress:network.macAddress]
            10   networkDevices = @[network]
            11   [configuration setNetworkDevices:networkDevices]
            11   vsock = [[VZVirtioSocketDeviceConfiguration alloc] init]
            10   socketDevices = @[vsock]
            11   [configuration setSocketDevices:socketDevices]
            11   entropy = [[VZVirtioEntropyDeviceConfiguration alloc] init]
            10   entropyDevices = @[entropy]
            11   [configuration setEntropyDevices:entropyDevices]
            11   balloon = [[VZVirtioTraditionalMemoryBalloonDeviceConfiguration alloc] init]
            10   memoryBalloonDevices = @[balloon]
            11   [configuration setMemoryBalloonDevices:memoryBalloonDevices]
            12   check [VZVirtioFileSystemDeviceConfiguration validateTag:@"virtiofs0" error:&error]
            12   share0.directory = [[VZSharedDirectory alloc] initWithURL:file:///srv/share readOnly:NO]
            12   share0.share = [[VZSingleDirectoryShare alloc] initWithDirectory:share0.directory]
            12   share0 = [[VZVirtioFileSystemDeviceConfiguration alloc] initWithTag:@"virtiofs0"]
            12   [share0 setShare:share0.share]
            12   check [VZVirtioFileSystemDeviceConfiguration validateTag:@"logs" error:&error]
            12   share1.directory = [[VZSharedDirectory alloc] initWithURL:file:///srv/logs readOnly:YES]
            12   share1.share = [[VZSingleDirectoryShare alloc] initWithDirectory:share1.directory]
            12   share1 = [[VZVirtioFileSystemDeviceConfiguration alloc] initWithTag:@"logs"]
            12   [share1 setShare:share1.share]
            10   directorySharingDevices = @[share0, share1]
            12   [configuration setDirectorySharingDevices:directorySharingDevices]
            11   check [configuration validateWithError:&error]
            11   vm = [[VZVirtualMachine alloc] initWithConfiguration:configuration queue:<vm queue>]

            """,
            PlanText.Render(VzPlanner.Plan(spec, host)));
    }
}
