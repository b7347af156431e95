using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lkrun.Spec;

/// <summary>An address as its text; anything else in the JSON is a <see cref="JsonException"/>, as for every other value.</summary>
public sealed class IPAddressJsonConverter : JsonConverter<IPAddress>
{
    public override IPAddress? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.Null => null,
        JsonTokenType.String when IPAddress.TryParse(reader.GetString()!, out var address) => address,
        _ => throw new JsonException($"not an IP address: {(reader.TokenType == JsonTokenType.String ? reader.GetString() : reader.TokenType.ToString())}"),
    };

    public override void Write(Utf8JsonWriter writer, IPAddress value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ToString());
}
