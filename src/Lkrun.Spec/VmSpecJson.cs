using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lkrun.Spec;

/// <summary>The JSON form of a <see cref="VmSpec"/>, written into the state dir and read back by tests and tools.</summary>
public static class VmSpecJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    public static string Serialize(VmSpec spec) => JsonSerializer.Serialize(spec, Options);

    public static VmSpec Deserialize(string json) =>
        JsonSerializer.Deserialize<VmSpec>(json, Options) ?? throw new JsonException("empty VM spec");
}
