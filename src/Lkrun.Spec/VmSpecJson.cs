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

    public static VmSpec Deserialize(string json) =>
        JsonSerializer.Deserialize(json, Context.VmSpec) ?? throw new JsonException("empty VM spec");
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(VmSpec))]
[JsonSerializable(typeof(List<DiskSpec>))]
[JsonSerializable(typeof(List<uint>))]
[JsonSerializable(typeof(List<PublishedPort>))]
[JsonSerializable(typeof(List<SharedDirectorySpec>))]
internal sealed partial class VmSpecJsonContext : JsonSerializerContext;
