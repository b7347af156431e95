using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lkrun.Spec;

/// <summary>The JSON form of a <see cref="VmSpec"/>, written into the state dir and read back by tests and tools.</summary>
public static class VmSpecJson
{
    private static readonly VmSpecJsonContext Context = new(new JsonSerializerOptions(VmSpecJsonContext.Default.Options)
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    public static string Serialize(VmSpec spec) => JsonSerializer.Serialize(spec, Context.VmSpec);

    /// <summary>Reads a spec; anything that does not describe one, down to a missing or null field, is a <see cref="JsonException"/>.</summary>
    public static VmSpec Deserialize(string json)
    {
        try
        {
            var spec = JsonSerializer.Deserialize(json, Context.VmSpec) ?? throw new JsonException("empty VM spec");
            return MissingField(spec) is { } missing ? throw new JsonException($"the VM spec has no {missing}") : spec;
        }
        catch (NotSupportedException e)
        {
            // How System.Text.Json reports a boot, engine or metadata object without its "kind".
            throw new JsonException(e.Message, e);
        }
    }

    /// <summary>
    /// The generated reader gives an init-only property that the JSON leaves out its type's default, null for these
    /// lists and records, rather than the initializer's value; every vm.json lkrun writes has them all.
    /// </summary>
    private static string? MissingField(VmSpec spec) => spec switch
    {
        { Disks: null } => "disks",
        { Network: null } => "network",
        { Network.PublishedPorts: null } => "network.publishedPorts",
        { VsockPorts: null } => "vsockPorts",
        { Console: null } => "console",
        { SharedDirectories: null } => "sharedDirectories",
        _ => null,
    };
}

[JsonSourceGenerationOptions(
    WriteIndented = true,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true)]
[JsonSerializable(typeof(VmSpec))]
[JsonSerializable(typeof(List<DiskSpec>))]
[JsonSerializable(typeof(List<uint>))]
[JsonSerializable(typeof(List<PublishedPort>))]
[JsonSerializable(typeof(List<SharedDirectorySpec>))]
internal sealed partial class VmSpecJsonContext : JsonSerializerContext;
