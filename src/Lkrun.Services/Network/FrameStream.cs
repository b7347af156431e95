using System.Buffers.Binary;
using Lkrun.Spec;

namespace Lkrun.Services.Network;

/// <summary>
/// The framing of QEMU's <c>-netdev stream</c> (net/stream.c): every Ethernet frame is preceded by its length
/// as a 4-byte big-endian number, with nothing else on the stream.
/// </summary>
public static class FrameStream
{
    public const int LengthPrefix = 4;

    /// <summary>
    /// The longest frame either side passes on: the NAT network's MTU plus the Ethernet header, and a VLAN tag's
    /// 4 bytes of slack. QEMU's own limit is larger (69632), so a longer frame comes from a guest that ignores its
    /// MTU, and is dropped.
    /// </summary>
    public const int MaxFrameLength = NatNetwork.Mtu + EthernetFrame.HeaderLength + 4;
}

/// <summary>
/// Splits the byte stream from QEMU into frames, whatever the reads' sizes. Frames shorter than an Ethernet
/// header or longer than <see cref="FrameStream.MaxFrameLength"/> are skipped without being buffered, so a
/// misbehaving guest costs nothing but its own frames; <see cref="DroppedFrames"/> counts them.
/// </summary>
public sealed class FrameStreamReader
{
    private readonly byte[] _buffer;
    private int _start;
    private int _end;
    private long _skipping;

    /// <param name="bufferSize">At least one whole frame with its prefix; larger lets one read carry many frames.</param>
    public FrameStreamReader(int bufferSize = 256 * 1024)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, FrameStream.LengthPrefix + FrameStream.MaxFrameLength);
        _buffer = new byte[bufferSize];
    }

    public long DroppedFrames { get; private set; }

    /// <summary>
    /// Where the next read goes; never empty. Frames returned by <see cref="TryReadFrame"/> so far stay valid
    /// until this is called again.
    /// </summary>
    public Span<byte> FreeSpace()
    {
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }
        return _buffer.AsSpan(_end);
    }

    /// <summary>Forgets everything read, for a new connection that starts at a frame boundary.</summary>
    public void Reset()
    {
        _start = _end = 0;
        _skipping = 0;
    }

    /// <summary>Takes in <paramref name="count"/> bytes just read into <see cref="FreeSpace"/>.</summary>
    public void Received(int count)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _buffer.Length - _end);
        _end += count;
    }

    /// <summary>The next whole frame; false when more bytes are needed first.</summary>
    public bool TryReadFrame(out ReadOnlySpan<byte> frame)
    {
        while (true)
        {
            frame = default;
            if (_skipping > 0)
            {
                var skipped = (int)Math.Min(_skipping, _end - _start);
                _start += skipped;
                _skipping -= skipped;
                if (_skipping > 0)
                {
                    return false;
                }
            }
            var available = _end - _start;
            if (available < FrameStream.LengthPrefix)
            {
                return false;
            }
            var length = BinaryPrimitives.ReadUInt32BigEndian(_buffer.AsSpan(_start));
            if (length < EthernetFrame.HeaderLength || length > FrameStream.MaxFrameLength)
            {
                DroppedFrames++;
                _start += FrameStream.LengthPrefix;
                _skipping = length;
                continue;
            }
            if (available < FrameStream.LengthPrefix + length)
            {
                return false;
            }
            frame = _buffer.AsSpan(_start + FrameStream.LengthPrefix, (int)length);
            _start += FrameStream.LengthPrefix + (int)length;
            return true;
        }
    }
}

/// <summary>
/// Frames on their way to QEMU, with their length prefixes, until the socket takes them. The queue is bounded:
/// a frame that does not fit is dropped, as a full link would, and the guest's TCP sends it again.
/// </summary>
public sealed class FrameStreamWriter
{
    private readonly byte[] _buffer;
    private int _start;
    private int _end;

    public FrameStreamWriter(int capacity = 1024 * 1024)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, FrameStream.LengthPrefix + FrameStream.MaxFrameLength);
        _buffer = new byte[capacity];
    }

    public long DroppedFrames { get; private set; }

    /// <summary>The bytes waiting for the socket, oldest first.</summary>
    public ReadOnlySpan<byte> Pending => _buffer.AsSpan(_start, _end - _start);

    public bool IsEmpty => _start == _end;

    /// <summary>Queues <paramref name="frame"/>; false when it was dropped (too long, or no room).</summary>
    public bool TryQueue(ReadOnlySpan<byte> frame)
    {
        if (frame.Length > FrameStream.MaxFrameLength)
        {
            DroppedFrames++;
            return false;
        }
        var needed = FrameStream.LengthPrefix + frame.Length;
        if (_buffer.Length - _end < needed && _start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }
        if (_buffer.Length - _end < needed)
        {
            DroppedFrames++;
            return false;
        }
        BinaryPrimitives.WriteUInt32BigEndian(_buffer.AsSpan(_end), (uint)frame.Length);
        frame.CopyTo(_buffer.AsSpan(_end + FrameStream.LengthPrefix));
        _end += needed;
        return true;
    }

    /// <summary>Drops the first <paramref name="count"/> bytes of <see cref="Pending"/>, which the socket took.</summary>
    public void Consumed(int count)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _end - _start);
        _start += count;
        if (_start == _end)
        {
            _start = _end = 0;
        }
    }

    /// <summary>Forgets everything queued, for a new connection that must start at a frame boundary.</summary>
    public void Clear() => _start = _end = 0;
}
