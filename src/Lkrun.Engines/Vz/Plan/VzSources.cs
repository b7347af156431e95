namespace Lkrun.Engines.Vz.Plan;

/// <summary>The reference implementations whose policies the plan follows, cited by the steps that follow them.</summary>
internal static class VzSources
{
    public const string LinuxKit = "linuxkit/linuxkit src/cmd/linuxkit/run_virtualizationframework_darwin_cgo_enabled.go";
    public const string VzExample = "Code-Hex/vz example/linux/main.go";
    public const string VzHelper = "Code-Hex/vz virtualization_helper.m (newFileHandleDupFd)";
    public const string VfkitDisks = "crc-org/vfkit pkg/vf/virtio.go (DiskStorageConfig: Cached + Fsync); lima-vm/lima PR #2026 (Automatic corrupts Linux guests)";
    public const string VfkitUsage = "crc-org/vfkit doc/usage.md";
    public const string VfkitBootLoader = "crc-org/vfkit pkg/vf/bootloader.go (arm64 Image magic at 0x38)";
    public const string QemuEngine = "lkrun's QEMU engine (QemuCommandLine: the same guest-visible order)";
}
