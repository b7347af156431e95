using System.Text.Json.Serialization;

namespace Lkrun.Control;

/// <summary><c>GET /vm/state</c>, as vfkit answers it.</summary>
public sealed record VmStateReply(string State, bool CanStart, bool CanPause, bool CanResume, bool CanStop, bool CanHardStop);

/// <summary>
/// <c>POST /vm/state</c>: vfkit's <c>{"state": "Stop"|"HardStop"|"Pause"|"Resume"}</c>, and lkrun's own
/// <c>timeout</c> in seconds for a Stop (default: the VM's <c>-stop-timeout</c>).
/// </summary>
public sealed record VmStateChange(string? State, double? Timeout = null);

/// <summary><c>POST /vm/publish</c>: a port as <c>-publish</c> takes it.</summary>
public sealed record PublishRequest(string? Port);

public sealed record PublishReply(string Port);

public sealed record PublishedPortsReply(IReadOnlyList<string> PublishedPorts);

public sealed record ErrorReply(string Error);

/// <summary>A disk of the VM, as vfkit's inspect lists virtio-blk devices.</summary>
public sealed record BlockDevice(string ImagePath, bool ReadOnly);

public sealed record NetworkDevice(bool Nat, string MacAddress);

/// <summary>A guest vsock port and the unix socket that reaches it (vfkit's <c>connect</c> direction).</summary>
public sealed record VsockDevice(uint Port, [property: JsonPropertyName("socketURL")] string SocketUrl, bool Connect);

/// <summary>A <c>-virtiofs</c> share, with vfkit's names for the directory and the tag the guest mounts.</summary>
public sealed record SharedDirectoryDevice(string SharedDir, string MountTag, bool ReadOnly);

public sealed record VmDevices(
    IReadOnlyList<BlockDevice> Blk, IReadOnlyList<NetworkDevice> Net, IReadOnlyList<VsockDevice> Vsock, IReadOnlyList<SharedDirectoryDevice> Virtiofs);

/// <summary>
/// <c>GET /vm/inspect</c>: vfkit's <c>cpus</c>, <c>memory</c> (MiB) and <c>devices</c>, then lkrun's own fields.
/// </summary>
public sealed record VmInspection(
    uint Cpus,
    ulong Memory,
    VmDevices Devices,
    string Name,
    string Engine,
    int Pid,
    string StateDirectory,
    string? Address,
    IReadOnlyList<string> PublishedPorts,
    IReadOnlyList<VsockDevice> VsockSockets,
    DateTimeOffset StartedAt,
    string State);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(VmStateReply))]
[JsonSerializable(typeof(VmStateChange))]
[JsonSerializable(typeof(PublishRequest))]
[JsonSerializable(typeof(PublishReply))]
[JsonSerializable(typeof(PublishedPortsReply))]
[JsonSerializable(typeof(ErrorReply))]
[JsonSerializable(typeof(VmInspection))]
public sealed partial class ControlJson : JsonSerializerContext;
