namespace Lkrun.Services.Console;

/// <summary>
/// The last bytes the console printed, kept in a ring, so that a terminal attaching to a running VM first sees the
/// screenful it would have seen had it been there. Thread-safe: the relay appends while an attachment reads.
/// </summary>
public sealed class ConsoleHistory(int capacity = ConsoleHistory.DefaultCapacity)
{
    /// <summary>Enough for a screenful of long lines; a screen that needs more than this shows less.</summary>
    public const int DefaultCapacity = 64 * 1024;

    private readonly byte[] _ring = new byte[capacity];
    private readonly object _gate = new();
    private long _written;

    public void Append(ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            if (bytes.Length >= _ring.Length)
            {
                bytes = bytes[^_ring.Length..];
            }
            var start = (int)(_written % _ring.Length);
            var first = Math.Min(bytes.Length, _ring.Length - start);
            bytes[..first].CopyTo(_ring.AsSpan(start));
            bytes[first..].CopyTo(_ring);
            _written += bytes.Length;
        }
    }

    /// <summary>
    /// The kept bytes from the start of the <paramref name="lines"/>th line from the end (a line the console is
    /// still printing counts as one); everything kept when it holds fewer lines.
    /// </summary>
    public byte[] LastLines(int lines)
    {
        var kept = Snapshot();
        var end = kept.Length;
        // A final newline ends the line being counted, not a new empty one.
        var searchEnd = end > 0 && kept[end - 1] == (byte)'\n' ? end - 1 : end;
        var start = searchEnd;
        for (var found = 0; found < lines; found++)
        {
            var newline = start == 0 ? -1 : Array.LastIndexOf(kept, (byte)'\n', start - 1, start);
            if (newline < 0)
            {
                return kept;
            }
            start = newline;
        }
        return kept[(start + 1)..];
    }

    private byte[] Snapshot()
    {
        lock (_gate)
        {
            var length = (int)Math.Min(_written, _ring.Length);
            var result = new byte[length];
            var start = (int)((_written - length) % _ring.Length);
            var first = Math.Min(length, _ring.Length - start);
            _ring.AsSpan(start, first).CopyTo(result);
            _ring.AsSpan(0, length - first).CopyTo(result.AsSpan(first));
            return result;
        }
    }
}
