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

        _buffer ??= ArrayPool<byte>.Shared.Rent(Capacity);
        var end = (_start + Count) % Capacity;
        var first = Math.Min(length, Capacity - end);
        chain.CopyFromReadable(offset, _buffer.AsSpan(end, first));
        if (length > first)
        {
            chain.CopyFromReadable(offset + first, _buffer.AsSpan(0, length - first));
        }

        Count += length;
        return true;
    }

    /// <summary>Appends local bytes (tests and callers without a chain); false when they do not fit.</summary>
    public bool TryAppend(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > Free)
        {
            return false;
        }

        _buffer ??= ArrayPool<byte>.Shared.Rent(Capacity);
        var end = (_start + Count) % Capacity;
        var first = Math.Min(bytes.Length, Capacity - end);
        bytes[..first].CopyTo(_buffer.AsSpan(end));
        bytes[first..].CopyTo(_buffer);
        Count += bytes.Length;
        return true;
    }

    /// <summary>Writes as much as the socket takes; returns the bytes written or -errno.</summary>
    public nint WriteTo(int fd)
    {
        if (_buffer is null || Count == 0)
        {
            return 0;
        }

        fixed (byte* start = _buffer)
        {
            Span<LibC.Iovec> iovecs = stackalloc LibC.Iovec[2];
            var first = Math.Min(Count, Capacity - _start);
            iovecs[0] = new LibC.Iovec { Base = start + _start, Length = (nuint)first };
            iovecs[1] = new LibC.Iovec { Base = start, Length = (nuint)(Count - first) };
            var written = UnixSocket.SendVectors(fd, iovecs[..(Count > first ? 2 : 1)]);
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
        if (_buffer is null)
        {
            return 0;
        }

        var total = Math.Min(Count, destination.Length);
        var first = Math.Min(total, Capacity - _start);
        _buffer.AsSpan(_start, first).CopyTo(destination);
        _buffer.AsSpan(0, total - first).CopyTo(destination[first..]);
        return total;
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
