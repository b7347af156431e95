using Lkrun.Spec;

namespace Lkrun.Cli;

/// <summary>The flags of <c>lkrun run</c> exactly as typed, before any interpretation.</summary>
public sealed record RunOptions
{
    /// <summary>The backend named before the prefix, or the platform's default.</summary>
    public required EngineKind Engine { get; init; }
    public required string Prefix { get; init; }
    public string? Cpus { get; init; }
    public string? Mem { get; init; }
    public string? State { get; init; }
    public bool Kernel { get; init; }
    public bool ConsoleFile { get; init; }
    public string? Accel { get; init; }
    public string? Qemu { get; init; }
    public string? Machine { get; init; }
    public string? KernelEntry { get; init; }
    public IReadOnlyList<string> Disks { get; init; } = [];
    public string? Data { get; init; }
    public string? DataFile { get; init; }
    public bool Squashfs { get; init; }
    public bool Iso { get; init; }
    public bool Uefi { get; init; }
    public string? Firmware { get; init; }
    public string? Networking { get; init; }
    public IReadOnlyList<string> Publish { get; init; } = [];
    public string? Ip { get; init; }
    public IReadOnlyList<string> VsockPorts { get; init; } = [];
    public IReadOnlyList<string> Virtiofs { get; init; } = [];
    public string? StopTimeout { get; init; }

    /// <summary><c>--detach</c>: run the VM in the background.</summary>
    public bool Detach { get; init; }

    /// <summary><c>--name</c>: the VM's name for the other commands; null for the image name, made unique.</summary>
    public string? Name { get; init; }
}
