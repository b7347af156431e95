using Lkrun.Services.Interop;

namespace Lkrun.Services.VhostUser;

/// <summary>A piece of a guest buffer, already translated to host memory.</summary>
internal readonly record struct GuestSegment(nint Host, int Length);

/// <summary>
/// One validated descriptor chain: the device-readable segments followed by the device-writable ones, every one
/// inside guest memory. The queue reuses one instance, so a chain is valid until the next pop from its queue.
/// </summary>
internal sealed unsafe class DescriptorChain
{
    private readonly GuestSegment[] _segments;
    private int _readableCount;
    private int _writableCount;

    public DescriptorChain(int maxSegments)
    {
        _segments = new GuestSegment[maxSegments];
    }

    public ushort Head { get; private set; }

    public ReadOnlySpan<GuestSegment> Readable => _segments.AsSpan(0, _readableCount);

    public ReadOnlySpan<GuestSegment> Writable => _segments.AsSpan(_readableCount, _writableCount);

    public long ReadableLength { get; private set; }

    public long WritableLength { get; private set; }

    internal int Capacity => _segments.Length;

    internal void Start(ushort head)
    {
        Head = head;
        _readableCount = 0;
        _writableCount = 0;
        ReadableLength = 0;
        WritableLength = 0;
    }

    /// <summary>Appends a segment; the walker guarantees readable ones come first and capacity is not exceeded.</summary>
    internal void Add(GuestSegment segment, bool writable)
    {
        _segments[_readableCount + _writableCount] = segment;
        if (writable)
        {
            _writableCount++;
            WritableLength += segment.Length;
        }
        else
        {
            _readableCount++;
            ReadableLength += segment.Length;
        }
    }

    /// <summary>Copies readable bytes from <paramref name="offset"/> into <paramref name="destination"/>; returns the count copied.</summary>
    public int CopyFromReadable(long offset, Span<byte> destination) => Copy(Readable, offset, destination, toGuest: false);

    /// <summary>Copies <paramref name="source"/> into the writable bytes at <paramref name="offset"/>; returns the count copied.</summary>
    public int CopyToWritable(long offset, ReadOnlySpan<byte> source)
    {
        fixed (byte* start = source)
        {
            // Safe: the span is pinned and only read through this view.
            return Copy(Writable, offset, new Span<byte>(start, source.Length), toGuest: true);
        }
    }

    /// <summary>
    /// Describes up to <paramref name="maxBytes"/> readable (or writable) bytes starting at <paramref name="offset"/>
    /// as iovecs for one scatter-gather system call; returns the number of iovecs filled and the bytes they cover.
    /// </summary>
    public (int Count, int Bytes) FillIovecs(bool writable, long offset, int maxBytes, Span<LibC.Iovec> iovecs)
    {
        var segments = writable ? Writable : Readable;
        var count = 0;
        var bytes = 0;
        foreach (var segment in segments)
        {
            if (count == iovecs.Length || bytes == maxBytes)
            {
                break;
            }

            if (offset >= segment.Length)
            {
                offset -= segment.Length;
                continue;
            }

            var take = (int)Math.Min(segment.Length - offset, maxBytes - bytes);
            iovecs[count++] = new LibC.Iovec { Base = (void*)(segment.Host + (nint)offset), Length = (nuint)take };
            bytes += take;
            offset = 0;
        }

        return (count, bytes);
    }

    private static int Copy(ReadOnlySpan<GuestSegment> segments, long offset, Span<byte> local, bool toGuest)
    {
        var copied = 0;
        foreach (var segment in segments)
        {
            if (copied == local.Length)
            {
                break;
            }

            if (offset >= segment.Length)
            {
                offset -= segment.Length;
                continue;
            }

            var take = (int)Math.Min(segment.Length - offset, local.Length - copied);
            // Safe: the walker translated the whole segment into mapped guest memory and take stays inside it.
            var guest = new Span<byte>((void*)(segment.Host + (nint)offset), take);
            if (toGuest)
            {
                local.Slice(copied, take).CopyTo(guest);
            }
            else
            {
                guest.CopyTo(local.Slice(copied, take));
            }

            copied += take;
            offset = 0;
        }

        return copied;
    }
}
