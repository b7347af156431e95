using System.Collections;
using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Lkrun.Spec;

/// <summary>
/// An immutable list with value equality, so records holding lists compare by content. Properties of this type
/// carry <c>[JsonConverter(typeof(ValueListJsonConverter&lt;T&gt;))]</c> so that JSON stays source-generated.
/// </summary>
public sealed class ValueList<T> : IReadOnlyList<T>, IEquatable<ValueList<T>>
{
    public static readonly ValueList<T> Empty = new(ImmutableArray<T>.Empty);

    private readonly ImmutableArray<T> _items;

    public ValueList(IEnumerable<T> items) => _items = [.. items];

    private ValueList(ImmutableArray<T> items) => _items = items;

    public int Count => _items.Length;

    public T this[int index] => _items[index];

    public bool Equals(ValueList<T>? other) =>
        other is not null && _items.AsSpan().SequenceEqual(other._items.AsSpan(), EqualityComparer<T>.Default);

    public override bool Equals(object? obj) => Equals(obj as ValueList<T>);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var item in _items)
        {
            hash.Add(item);
        }
        return hash.ToHashCode();
    }

    public IEnumerator<T> GetEnumerator() => ((IEnumerable<T>)_items).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => $"[{string.Join(", ", _items)}]";

    public static implicit operator ValueList<T>(T[] items) => new(items);
}

public sealed class ValueListJsonConverter<T> : JsonConverter<ValueList<T>>
{
    /// <summary>A null list is read here too, to be refused: the serializer's null checks pass over converted properties.</summary>
    public override bool HandleNull => true;

    public override ValueList<T> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var items = reader.TokenType == JsonTokenType.Null ? null : JsonSerializer.Deserialize(ref reader, ListInfo(options));
        if (items is null || items.Any(item => item is null))
        {
            throw new JsonException($"a list of {typeof(T).Name} is null or holds null");
        }
        return new(items);
    }

    public override void Write(Utf8JsonWriter writer, ValueList<T> value, JsonSerializerOptions options) =>
        JsonSerializer.Serialize(writer, value.ToList(), ListInfo(options));

    private static JsonTypeInfo<List<T>> ListInfo(JsonSerializerOptions options) =>
        (JsonTypeInfo<List<T>>)options.GetTypeInfo(typeof(List<T>));
}
