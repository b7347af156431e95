using System.Runtime.InteropServices;
using Lkrun.Engines.Vz.Catalogue;

namespace Lkrun.Engines.Vz.Plan;

/// <summary>
/// What the host services hand the planner beside the spec: files they prepared in the state dir, descriptors
/// they opened, and facts about this Mac. The planner reads nothing itself.
/// </summary>
public sealed record VzHostInputs
{
    /// <summary>This Mac's macOS (<see cref="Environment.OSVersion"/> on macOS).</summary>
    public required MacOSVersion MacOS { get; init; }

    /// <summary>The host's (and so the guest's) architecture: Arm64 or X64.</summary>
    public required Architecture Architecture { get; init; }

    /// <summary>For kernel boots, the kernel to boot: the image's own, or its inflated copy when it is gzip-compressed.</summary>
    public string? Kernel { get; init; }

    /// <summary>The first bytes of <see cref="Kernel"/> (64 are enough), to tell an arm64 Image from anything else.</summary>
    public ReadOnlyMemory<byte> KernelHeader { get; init; }

    /// <summary>The metadata CD (<c>data.iso</c>), when the VM has metadata.</summary>
    public string? MetadataIso { get; init; }

    /// <summary>For EFI boots, the VM's own variable store in the state dir.</summary>
    public VzEfiVariableStoreFile? EfiVariableStore { get; init; }

    /// <summary>On macOS 13 and newer, the file that keeps the VM's machine identifier.</summary>
    public VzMachineIdentifierFile? MachineIdentifier { get; init; }

    /// <summary>The host end of the guest's console.</summary>
    public required VzConsoleDescriptors Console { get; init; }

    /// <summary>
    /// With lkrun's own network (<c>-networking default</c>), a connected <c>SOCK_DGRAM</c> unix socket that carries
    /// one Ethernet frame per datagram to and from the network service.
    /// </summary>
    public int? NetworkDescriptor { get; init; }

    /// <summary>The guest interface's stable MAC address (<c>STATE/mac</c>), as <c>xx:xx:xx:xx:xx:xx</c>.</summary>
    public string? MacAddress { get; init; }
}

/// <summary>The VM's EFI variable store: created on its first EFI boot, reused afterwards.</summary>
public sealed record VzEfiVariableStoreFile(string Path, bool Exists);

/// <summary>
/// Where the VM keeps its <c>VZGenericMachineIdentifier</c>, and the bytes kept there by an earlier run (null on
/// the first run, when the executor writes a new one).
/// </summary>
public sealed record VzMachineIdentifierFile(string Path, byte[]? Existing);

/// <summary>
/// The descriptors the guest's console reads from and writes to; they may be the same socket. A null input means
/// the guest reads nothing (a console whose input is redirected).
/// </summary>
public sealed record VzConsoleDescriptors(int? Input, int Output);
