using System.Text.Json.Serialization;

namespace Lkrun.Spec;

/// <summary>
/// Everything needed to run one VM, independent of the engine that runs it. Built from the command line,
/// validated by <see cref="VmSpecValidator"/> before anything is created on the host.
/// </summary>
public sealed record VmSpec
{
    /// <summary>The image name: the last path element of the prefix, used in messages.</summary>
    public required string Name { get; init; }

    public required BootSource Boot { get; init; }

    public int Cpus { get; init; } = Defaults.Cpus;

    public int MemoryMiB { get; init; } = Defaults.MemoryMiB;

    /// <summary>Persistent disks in command-line order; paths are resolved (size-only disks live in the state dir).</summary>
    [JsonConverter(typeof(ValueListJsonConverter<DiskSpec>))]
    public ValueList<DiskSpec> Disks { get; init; } = ValueList<DiskSpec>.Empty;

    public MetadataSpec? Metadata { get; init; }

    public NetworkSpec Network { get; init; } = NetworkSpec.Default;

    /// <summary>Guest vsock ports exposed as unix sockets in the state dir.</summary>
    [JsonConverter(typeof(ValueListJsonConverter<uint>))]
    public ValueList<uint> VsockPorts { get; init; } = ValueList<uint>.Empty;

    public ConsoleSpec Console { get; init; } = ConsoleSpec.Terminal;

    /// <summary>Host directories shared with the guest over virtio-fs, in command-line order.</summary>
    [JsonConverter(typeof(ValueListJsonConverter<SharedDirectorySpec>))]
    public ValueList<SharedDirectorySpec> SharedDirectories { get; init; } = ValueList<SharedDirectorySpec>.Empty;

    public required string StateDirectory { get; init; }

    /// <summary>How long a guest may take to power off after the ACPI power button before it is stopped hard.</summary>
    public TimeSpan StopTimeout { get; init; } = Defaults.StopTimeout;

    public required EngineSpec Engine { get; init; }
}

public static class Defaults
{
    public const int Cpus = 1;
    public const int MemoryMiB = 1024;
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(30);
}

/// <summary>How the guest boots: one of LinuxKit's output formats.</summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "kind")]
[JsonDerivedType(typeof(KernelInitrdBoot), "kernel+initrd")]
[JsonDerivedType(typeof(KernelSquashfsBoot), "kernel+squashfs")]
[JsonDerivedType(typeof(IsoBoot), "iso")]
public abstract record BootSource;

/// <summary>LinuxKit's <c>prefix-kernel</c>, <c>prefix-initrd.img</c> and <c>prefix-cmdline</c>.</summary>
public sealed record KernelInitrdBoot(string Kernel, string Initrd, string Cmdline) : BootSource;

/// <summary>LinuxKit's <c>prefix-kernel</c>, <c>prefix-squashfs.img</c> and <c>prefix-cmdline</c>; the squashfs is the root disk.</summary>
public sealed record KernelSquashfsBoot(string Kernel, string Squashfs, string Cmdline) : BootSource;

/// <summary>A bootable ISO, through EFI firmware when <paramref name="Uefi"/> is set and through the BIOS otherwise.</summary>
public sealed record IsoBoot(string Iso, bool Uefi, string? Firmware) : BootSource;

[JsonConverter(typeof(JsonStringEnumConverter<DiskFormat>))]
public enum DiskFormat
{
    [JsonStringEnumMemberName("raw")]
    Raw,

    [JsonStringEnumMemberName("qcow2")]
    Qcow2,
}

/// <summary>
/// A persistent disk. <paramref name="SizeMiB"/> is the size to create a missing file with; an existing file is
/// used as it is.
/// </summary>
public sealed record DiskSpec(string Path, long? SizeMiB, DiskFormat Format);

/// <summary>
/// A host directory the guest mounts over virtio-fs by its <paramref name="Tag"/> (<c>mount -t virtiofs TAG DIR</c>):
/// <c>-virtiofs PATH[,tag=TAG][,ro]</c>. <paramref name="Path"/> is absolute.
/// </summary>
public sealed record SharedDirectorySpec(string Path, string Tag, bool ReadOnly)
{
    /// <summary>
    /// The longest tag in UTF-8 bytes: Virtualization.framework takes fewer than 36 (VZVirtioFileSystemDeviceConfiguration.h,
    /// macOS 14.4 SDK), and the virtio-fs config space holds 36 (virtio spec 1.2, 5.11.4).
    /// </summary>
    public const int MaxTagBytes = 35;

    /// <summary>LinuxKit's tag for the share at <paramref name="index"/> among the <c>-virtiofs</c> flags.</summary>
    public static string DefaultTag(int index) => $"virtiofs{index}";
}

/// <summary>User data for LinuxKit's metadata package: text given inline (<c>-data</c>) or a file (<c>-data-file</c>).</summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "kind")]
[JsonDerivedType(typeof(InlineMetadata), "inline")]
[JsonDerivedType(typeof(MetadataFile), "file")]
public abstract record MetadataSpec
{
    /// <summary>
    /// The metadata the flags <c>-data</c> and <c>-data-file</c> give (of <c>lkrun run</c> and of
    /// <c>lkrun metadata create</c>): null for neither, and a usage error for both.
    /// </summary>
    public static MetadataSpec? FromFlags(string? data, string? dataFile) => (data, dataFile) switch
    {
        (null, null) => null,
        (not null, not null) => throw SpecException.Usage("-data and -data-file cannot both be given"),
        (not null, null) => new InlineMetadata(data),
        _ => new MetadataFile(System.IO.Path.GetFullPath(dataFile!)),
    };
}

/// <summary>Metadata given on the command line, written to the image as UTF-8.</summary>
public sealed record InlineMetadata(string Text) : MetadataSpec;

/// <summary>Metadata read from a file (or a FIFO, or a pipe such as <c>&lt;(...)</c>), byte for byte.</summary>
public sealed record MetadataFile(string Path) : MetadataSpec;

[JsonConverter(typeof(JsonStringEnumConverter<ConsoleMode>))]
public enum ConsoleMode
{
    /// <summary>The console is on lkrun's stdio; interactive when stdin is a terminal.</summary>
    [JsonStringEnumMemberName("terminal")]
    Terminal,

    /// <summary>The console is written to <c>console.log</c> in the state dir.</summary>
    [JsonStringEnumMemberName("file")]
    File,
}

public sealed record ConsoleSpec(ConsoleMode Mode)
{
    public static readonly ConsoleSpec Terminal = new(ConsoleMode.Terminal);
    public static readonly ConsoleSpec File = new(ConsoleMode.File);
}

/// <summary>The engines lkrun has; the command line calls them backends, as linuxkit does.</summary>
public enum EngineKind
{
    Qemu,
    VirtualizationFramework,
}

/// <summary>The engine that runs the VM, with the settings only that engine understands.</summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "kind")]
[JsonDerivedType(typeof(QemuEngineSpec), "qemu")]
[JsonDerivedType(typeof(VirtualizationFrameworkEngineSpec), "virtualization.framework")]
public abstract record EngineSpec
{
    public abstract EngineKind Kind { get; }
}

/// <summary>
/// QEMU settings: the binary (found on PATH when null), the accelerator (kvm when usable, else tcg), the machine
/// type and how a kernel boot enters the kernel (both chosen from the kernel when <c>auto</c>).
/// </summary>
public sealed record QemuEngineSpec(
    string? Binary,
    string? Accelerator,
    QemuMachineType Machine = QemuMachineType.Auto,
    KernelEntry KernelEntry = KernelEntry.Auto) : EngineSpec
{
    [JsonIgnore]
    public override EngineKind Kind => EngineKind.Qemu;
}

/// <summary>QEMU's machine type (<c>-machine</c>).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<QemuMachineType>))]
public enum QemuMachineType
{
    /// <summary><c>microvm</c> for a kernel boot whose kernel can use it, <c>q35</c> otherwise.</summary>
    [JsonStringEnumMemberName("auto")]
    Auto,

    /// <summary>A PC with PCI, firmware and option ROMs: boots anything.</summary>
    [JsonStringEnumMemberName("q35")]
    Q35,

    /// <summary>A machine without PCI or firmware to speak of, its devices on virtio-mmio: kernel boots only.</summary>
    [JsonStringEnumMemberName("microvm")]
    Microvm,
}

/// <summary>How a kernel boot enters an x86 kernel (<c>-kernel-entry</c>).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<KernelEntry>))]
public enum KernelEntry
{
    /// <summary>PVH when the kernel has the entry and lkrun can decompress it, the bzImage otherwise.</summary>
    [JsonStringEnumMemberName("auto")]
    Auto,

    /// <summary>The decompressed ELF kernel, entered at its PVH entry point; a kernel that has none is an error.</summary>
    [JsonStringEnumMemberName("pvh")]
    Pvh,

    /// <summary>The bzImage as it is, through the Linux boot protocol: the guest decompresses its own kernel.</summary>
    [JsonStringEnumMemberName("bzimage")]
    BzImage,
}

public sealed record VirtualizationFrameworkEngineSpec : EngineSpec
{
    [JsonIgnore]
    public override EngineKind Kind => EngineKind.VirtualizationFramework;
}
