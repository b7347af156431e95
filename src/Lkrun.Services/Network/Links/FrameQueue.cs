using System.Buffers.Binary;

namespace Lkrun.Services.Network.Links;

/// <summary>
/// Frames on their way to the guest until the link's socket takes them, each preceded by its length as in
/// <see cref="FrameStream"/>: the stream link writes <see cref="Pending"/> as it is, the datagram link sends one
/// frame (<see cref="FirstFrame"/>) per datagram. The queue is bounded: a frame that does not fit is dropped, as a
/// full link would, and the guest's TCP sends it again.
/// </summary>
public sealed class FrameQueue
{
    private readonly byte[] _buffer;
    private int _start;
    private int _end;

    public FrameQueue(int capacity = 1024 * 1024)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, FrameStream.LengthPrefix + FrameLimits.MaxFrameLength);
        _buffer = new byte[capacity];
    }

    public long DroppedFrames { get; private set; }

    /// <summary>The bytes waiting for the socket, oldest first.</summary>
    public ReadOnlySpan<byte> Pending => _buffer.AsSpan(_start, _end - _start);

    public bool IsEmpty => _start == _end;

    /// <summary>Queues <paramref name="frame"/>; false when it was dropped (too long, or no room).</summary>
    public bool TryQueue(ReadOnlySpan<byte> frame)
    {
        if (frame.Length > FrameLimits.MaxFrameLength)
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

    /// <summary>The oldest frame queued, without its length; empty when nothing is queued.</summary>
    public ReadOnlySpan<byte> FirstFrame =>
        IsEmpty ? default : _buffer.AsSpan(_start + FrameStream.LengthPrefix, (int)BinaryPrimitives.ReadUInt32BigEndian(_buffer.AsSpan(_start)));

    /// <summary>Drops <see cref="FirstFrame"/>, which the socket took.</summary>
    public void RemoveFirstFrame() => Consumed(FrameStream.LengthPrefix + FirstFrame.Length);

    /// <summary>Forgets everything queued, for a new connection that must start at a frame boundary.</summary>
    public void Clear() => _start = _end = 0;
}
