using System.Buffers.Binary;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Links;

/// <summary>
/// How Ethernet frames are laid one after another on a byte stream: each preceded by its length, with nothing else
/// on the stream. Two encodings of the length are in use: QEMU's <c>-netdev stream</c> (net/stream.c) writes it as a
/// 4-byte big-endian number, VPNKit's ethernet protocol as a 2-byte little-endian one.
/// </summary>
public sealed class FrameStream
{
    /// <summary>QEMU's <c>-netdev stream</c>: a 4-byte big-endian length before each frame.</summary>
    public static readonly FrameStream Qemu = new(4, bigEndian: true);

    /// <summary>VPNKit's ethernet protocol once the handshake is done: a 2-byte little-endian length before each frame.</summary>
    public static readonly FrameStream Vpnkit = new(2, bigEndian: false);

    private readonly bool _bigEndian;

    private FrameStream(int lengthPrefix, bool bigEndian)
    {
        LengthPrefix = lengthPrefix;
        _bigEndian = bigEndian;
        MaxFrameLength = (int)Math.Min(FrameLimits.MaxFrameLength, (1L << (8 * lengthPrefix)) - 1);
    }

    /// <summary>The length's size in bytes.</summary>
    public int LengthPrefix { get; }

    /// <summary>The longest frame this stream carries: <see cref="FrameLimits.MaxFrameLength"/>, or less when the length cannot say more.</summary>
    public int MaxFrameLength { get; }

    /// <summary>The length at the start of <paramref name="prefix"/>, which holds at least <see cref="LengthPrefix"/> bytes.</summary>
    public uint ReadLength(ReadOnlySpan<byte> prefix) => (LengthPrefix, _bigEndian) switch
    {
        (4, true) => BinaryPrimitives.ReadUInt32BigEndian(prefix),
        _ => BinaryPrimitives.ReadUInt16LittleEndian(prefix),
    };

    /// <summary>Writes <paramref name="length"/>, at most <see cref="MaxFrameLength"/>, at the start of <paramref name="prefix"/>.</summary>
    public void WriteLength(Span<byte> prefix, int length)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, MaxFrameLength);
        if (_bigEndian)
        {
            BinaryPrimitives.WriteUInt32BigEndian(prefix, (uint)length);
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(prefix, (ushort)length);
        }
    }
}

/// <summary>
/// Splits a byte stream of length-prefixed frames (<see cref="FrameStream"/>) into frames, whatever the reads'
/// sizes. Frames shorter than an Ethernet header or longer than the stream's <see cref="FrameStream.MaxFrameLength"/>
/// are skipped without being buffered, so a misbehaving peer costs nothing but its own frames;
/// <see cref="DroppedFrames"/> counts them.
/// </summary>
public sealed class FrameStreamReader
{
    private readonly FrameStream _stream;
    private readonly byte[] _buffer;
    private int _start;
    private int _end;
    private long _skipping;

    /// <param name="bufferSize">At least one whole frame with its prefix; larger lets one read carry many frames.</param>
    /// <param name="stream">The framing; QEMU's when not given.</param>
    public FrameStreamReader(int bufferSize = 256 * 1024, FrameStream? stream = null)
    {
        _stream = stream ?? FrameStream.Qemu;
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, _stream.LengthPrefix + _stream.MaxFrameLength);
        _buffer = new byte[bufferSize];
    }

    public long DroppedFrames { get; private set; }

    /// <summary>Bytes taken in that are not yet part of a whole frame.</summary>
    public int Buffered => _end - _start;

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

    /// <summary>Takes in <paramref name="bytes"/> as though they had been read; they must fit in <see cref="FreeSpace"/>.</summary>
    public void Received(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(FreeSpace());
        Received(bytes.Length);
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
            if (available < _stream.LengthPrefix)
            {
                return false;
            }
            var length = _stream.ReadLength(_buffer.AsSpan(_start));
            if (length < EthernetFrame.HeaderLength || length > _stream.MaxFrameLength)
            {
                DroppedFrames++;
                _start += _stream.LengthPrefix;
                _skipping = length;
                continue;
            }
            if (available < _stream.LengthPrefix + length)
            {
                return false;
            }
            frame = _buffer.AsSpan(_start + _stream.LengthPrefix, (int)length);
            _start += _stream.LengthPrefix + (int)length;
            return true;
        }
    }
}
