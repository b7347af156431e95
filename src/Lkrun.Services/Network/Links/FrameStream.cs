using System.Buffers.Binary;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Links;

/// <summary>
/// The framing of QEMU's <c>-netdev stream</c> (net/stream.c): every Ethernet frame is preceded by its length
/// as a 4-byte big-endian number, with nothing else on the stream.
/// </summary>
public static class FrameStream
{
    public const int LengthPrefix = 4;
}

/// <summary>
/// Splits the byte stream from QEMU into frames, whatever the reads' sizes. Frames shorter than an Ethernet
/// header or longer than <see cref="FrameLimits.MaxFrameLength"/> are skipped without being buffered, so a
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
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, FrameStream.LengthPrefix + FrameLimits.MaxFrameLength);
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
            if (length < EthernetFrame.HeaderLength || length > FrameLimits.MaxFrameLength)
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
