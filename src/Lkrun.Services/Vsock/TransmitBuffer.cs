using System.Buffers;
using Lkrun.Services.Interop;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Vsock;

/// <summary>
/// Guest bytes a host socket did not accept yet, in a ring of fixed capacity. Its array is rented from the shared
/// pool only while bytes wait and returned as soon as it drains, so idle connections hold no buffer. The
/// capacity is the buf_alloc announced to the guest, so a guest that respects its credit can never overflow it.
/// </summary>
internal sealed unsafe class TransmitBuffer(int capacity)
{
    private byte[]? _buffer;
    private int _start;

    public int Capacity { get; } = capacity;

    public int Count { get; private set; }

    public bool IsEmpty => Count == 0;

    public int Free => Capacity - Count;

    /// <summary>Copies <paramref name="length"/> readable bytes of <paramref name="chain"/> from <paramref name="offset"/>; false when they do not fit.</summary>
    public bool TryAppend(DescriptorChain chain, long offset, int length)
    {
        if (length > Free)
        {
            return false;
        }

        Region(_start + Count, length, out var first, out var second);
        chain.CopyFromReadable(offset, first);
        if (!second.IsEmpty)
        {
            chain.CopyFromReadable(offset + first.Length, second);
        }

        Count += length;
        return true;
    }

    /// <summary>Appends local bytes; false when they do not fit.</summary>
    public bool TryAppend(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > Free)
        {
            return false;
        }

        Region(_start + Count, bytes.Length, out var first, out var second);
        bytes[..first.Length].CopyTo(first);
        bytes[first.Length..].CopyTo(second);
        Count += bytes.Length;
        return true;
    }

    /// <summary>Writes as much as the socket takes; returns the bytes written or -errno.</summary>
    public nint WriteTo(int fd)
    {
        if (IsEmpty)
        {
            return 0;
        }

        Region(_start, Count, out var first, out var second);
        fixed (byte* firstStart = first, secondStart = second)
        {
            Span<LibC.Iovec> iovecs = stackalloc LibC.Iovec[2];
            iovecs[0] = new LibC.Iovec { Base = firstStart, Length = (nuint)first.Length };
            iovecs[1] = new LibC.Iovec { Base = secondStart, Length = (nuint)second.Length };
            var written = UnixSocket.SendVectors(fd, iovecs[..(second.IsEmpty ? 1 : 2)]);
            if (written > 0)
            {
                Consume((int)written);
            }

            return written;
        }
    }

    /// <summary>Drops the first <paramref name="count"/> bytes (they were delivered).</summary>
    public void Consume(int count)
    {
        _start = (_start + count) % Capacity;
        Count -= count;
        if (Count == 0)
        {
            Release();
        }
    }

    /// <summary>Copies the waiting bytes out without consuming them.</summary>
    public int Peek(Span<byte> destination)
    {
        if (IsEmpty)
        {
            return 0;
        }

        Region(_start, Math.Min(Count, destination.Length), out var first, out var second);
        first.CopyTo(destination);
        second.CopyTo(destination[first.Length..]);
        return first.Length + second.Length;
    }

    /// <summary>
    /// The <paramref name="length"/> bytes of the ring from position <paramref name="from"/> (taken modulo the
    /// capacity), as the part up to the array's end and the part that wraps to its start. Rents the array when
    /// the buffer holds none.
    /// </summary>
    private void Region(int from, int length, out Span<byte> first, out Span<byte> second)
    {
        _buffer ??= ArrayPool<byte>.Shared.Rent(Capacity);
        var start = from % Capacity;
        var firstLength = Math.Min(length, Capacity - start);
        first = _buffer.AsSpan(start, firstLength);
        second = _buffer.AsSpan(0, length - firstLength);
    }

    /// <summary>Forgets the waiting bytes and gives the array back to the pool.</summary>
    public void Release()
    {
        if (_buffer is { } buffer)
        {
            _buffer = null;
            ArrayPool<byte>.Shared.Return(buffer);
        }

        _start = 0;
        Count = 0;
    }
}
