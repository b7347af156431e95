using System.Buffers.Binary;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// The byte stream of QEMU's <c>-netdev stream</c>, read in pieces of fuzzed sizes: the reader yields exactly the
/// frames (and drops exactly the frames) that a plain walk over the whole stream finds, whatever the pieces; and the
/// frames queued towards the guest read back unchanged.
/// </summary>
internal sealed class FrameStreamTarget : IFuzzTarget
{
    private readonly FrameStreamReader _reader = new();


    public IEnumerable<byte[]> Seeds()
    {
        var frames = new FramesTarget().Seeds().ToList();
        yield return [7, 0, 0, 0, .. Prefixed(frames)];
        yield return [1, 0, 0, 0, .. Prefixed(frames.Take(1)), 0, 0, 0, 3, 1, 2, 3, .. Prefixed(frames.Skip(1))];
        yield return [200, 1, 0, 0, 0, 1, 0, 0, .. new byte[40]];
    }

    private static byte[] Prefixed(IEnumerable<byte[]> frames) =>
        [.. frames.SelectMany(frame => (byte[])[.. Wire.BigEndian((uint)frame.Length), .. frame])];

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length < 4)
        {
            return;
        }
        var chopper = new Wire.Chopper(input[..4]);
        var stream = input[4..];
        var (expected, expectedDrops) = Walk(stream);

        _reader.Reset();
        var dropsBefore = _reader.DroppedFrames;
        var frames = new List<byte[]>();
        var offset = 0;
        while (offset < stream.Length)
        {
            var space = _reader.FreeSpace();
            Check.That(!space.IsEmpty, "the reader always has room for the next read");
            var count = Math.Min(Math.Min(space.Length, stream.Length - offset), 1 + chopper.Next(chopper.Next(4) == 0 ? 70_000 : 300));
            stream.Slice(offset, count).CopyTo(space);
            _reader.Received(count);
            offset += count;
            while (_reader.TryReadFrame(out var frame))
            {
                Check.That(frame.Length is >= EthernetFrame.HeaderLength and <= FrameLimits.MaxFrameLength, "a frame's length is within the limits");
                frames.Add(frame.ToArray());
            }
        }
        Check.That(frames.Count == expected.Count && frames.Zip(expected).All(pair => pair.First.AsSpan().SequenceEqual(pair.Second)), "the reader yields the stream's frames");
        Check.That(_reader.DroppedFrames - dropsBefore == expectedDrops, "the reader drops the stream's bad frames");

        // Towards the guest: queued frames come out as the same stream.
        var queue = new FrameQueue();
        var queued = frames.Where(frame => queue.TryQueue(frame)).ToList();
        var (back, drops) = Walk(queue.Pending);
        Check.That(drops == 0 && back.Count == queued.Count && back.Zip(queued).All(pair => pair.First.AsSpan().SequenceEqual(pair.Second)), "queued frames read back unchanged");
    }

    /// <summary>The frames of a whole stream by its definition: a 4-byte big-endian length, then that many bytes.</summary>
    private static (List<byte[]> Frames, long Dropped) Walk(ReadOnlySpan<byte> stream)
    {
        var frames = new List<byte[]>();
        long dropped = 0;
        long position = 0;
        while (stream.Length - position >= FrameStream.Qemu.LengthPrefix)
        {
            var length = BinaryPrimitives.ReadUInt32BigEndian(stream[(int)position..]);
            position += FrameStream.Qemu.LengthPrefix;
            if (length < EthernetFrame.HeaderLength || length > FrameLimits.MaxFrameLength)
            {
                dropped++;
                position += length;
                continue;
            }
            if (stream.Length - position < length)
            {
                break;
            }
            frames.Add(stream.Slice((int)position, (int)length).ToArray());
            position += length;
        }
        return (frames, dropped);
    }
}
