using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Links;

namespace Lkrun.Services.Tests.Network.Links;

public sealed class FrameStreamTests
{
    private static byte[] Prefixed(byte[] frame) => [.. TestFrames.BigEndian((uint)frame.Length), .. frame];

    private static byte[] FrameOf(int length, byte seed) => [.. Enumerable.Range(0, length).Select(i => (byte)(i * 7 + seed))];

    /// <summary>Feeds <paramref name="stream"/> to a reader in reads of the given sizes and collects the frames.</summary>
    private static List<byte[]> ReadAll(FrameStreamReader reader, byte[] stream, IEnumerable<int> readSizes)
    {
        var frames = new List<byte[]>();
        var offset = 0;
        using var sizes = readSizes.GetEnumerator();
        while (offset < stream.Length)
        {
            var free = reader.FreeSpace();
            Assert.False(free.IsEmpty);
            var size = Math.Min(Math.Min(sizes.MoveNext() ? Math.Max(1, sizes.Current) : int.MaxValue, free.Length), stream.Length - offset);
            stream.AsSpan(offset, size).CopyTo(free);
            reader.Received(size);
            offset += size;
            while (reader.TryReadFrame(out var frame))
            {
                frames.Add(frame.ToArray());
            }
        }
        return frames;
    }

    [Fact]
    public void Frames_come_out_whole_from_reads_of_one_byte()
    {
        var frames = new[] { FrameOf(14, 1), FrameOf(60, 2), FrameOf(1514, 3) };
        var stream = frames.SelectMany(Prefixed).ToArray();
        Assert.Equal(frames, ReadAll(new FrameStreamReader(), stream, Enumerable.Repeat(1, stream.Length)));
    }

    [Property(MaxTest = 200)]
    public Property Any_frames_split_anywhere_come_out_as_they_went_in()
    {
        var frameLengths = Gen.OneOf(Gen.Choose(14, 200), Gen.Choose(1000, 9000), Gen.Constant(FrameLimits.MaxFrameLength));
        var cases = from lengths in Gen.ListOf(frameLengths).Select(l => l.Take(12).ToList())
                    from reads in Gen.ListOf(Gen.Choose(1, 70_000))
                    select (lengths, reads);
        return Prop.ForAll(Arb.From(cases), c =>
        {
            var frames = c.lengths.Select((length, i) => FrameOf(length, (byte)i)).ToList();
            var stream = frames.SelectMany(Prefixed).ToArray();
            var reader = new FrameStreamReader(FrameStream.LengthPrefix + FrameLimits.MaxFrameLength);
            Assert.Equal(frames, ReadAll(reader, stream, c.reads));
            Assert.Equal(0, reader.DroppedFrames);
        });
    }

    [Property(MaxTest = 100)]
    public Property Frames_too_short_or_too_long_are_skipped_without_losing_the_ones_around_them()
    {
        var bad = Gen.OneOf(Gen.Choose(0, 13), Gen.Choose(FrameLimits.MaxFrameLength + 1, FrameLimits.MaxFrameLength + 300_000));
        var cases = from badLength in bad
                    from reads in Gen.ListOf(Gen.Choose(1, 100_000))
                    select (badLength, reads);
        return Prop.ForAll(Arb.From(cases), c =>
        {
            var before = FrameOf(60, 1);
            var after = FrameOf(100, 2);
            byte[] stream = [.. Prefixed(before), .. Prefixed(FrameOf(c.badLength, 3)), .. Prefixed(after)];
            var reader = new FrameStreamReader();
            Assert.Equal([before, after], ReadAll(reader, stream, c.reads));
            Assert.Equal(1, reader.DroppedFrames);
        });
    }

    [Fact]
    public void A_huge_length_is_skipped_as_the_bytes_arrive_without_buffering_them()
    {
        var reader = new FrameStreamReader();
        var header = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(header, uint.MaxValue);
        var frames = ReadAll(reader, [.. header, .. new byte[1_000_000]], Enumerable.Repeat(65536, 100));
        Assert.Empty(frames);
        Assert.Equal(1, reader.DroppedFrames);
    }

    [Fact]
    public void A_reset_reader_starts_at_a_frame_boundary()
    {
        var reader = new FrameStreamReader();
        var partial = Prefixed(FrameOf(100, 1)).AsSpan(0, 50).ToArray();
        Assert.Empty(ReadAll(reader, partial, [50]));
        reader.Reset();
        var frame = FrameOf(20, 2);
        Assert.Equal([frame], ReadAll(reader, Prefixed(frame), [100]));
    }

    [Fact]
    public void The_queue_prefixes_each_frame_with_its_length_and_keeps_what_the_socket_did_not_take()
    {
        var writer = new FrameQueue();
        Assert.True(writer.IsEmpty);
        Assert.True(writer.TryQueue(FrameOf(20, 1)));
        Assert.True(writer.TryQueue(FrameOf(30, 2)));
        Assert.Equal([.. Prefixed(FrameOf(20, 1)), .. Prefixed(FrameOf(30, 2))], writer.Pending.ToArray());
        writer.Consumed(10);
        Assert.Equal([.. Prefixed(FrameOf(20, 1)).Skip(10), .. Prefixed(FrameOf(30, 2))], writer.Pending.ToArray());
        writer.Consumed(writer.Pending.Length);
        Assert.True(writer.IsEmpty);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Consumed(1));
    }

    [Fact]
    public void The_queue_hands_out_its_frames_one_at_a_time_oldest_first()
    {
        var queue = new FrameQueue();
        Assert.True(queue.FirstFrame.IsEmpty);
        Assert.True(queue.TryQueue(FrameOf(14, 1)));
        Assert.True(queue.TryQueue(FrameOf(FrameLimits.MaxFrameLength, 2)));
        Assert.Equal(FrameOf(14, 1), queue.FirstFrame.ToArray());
        queue.RemoveFirstFrame();
        Assert.Equal(FrameOf(FrameLimits.MaxFrameLength, 2), queue.FirstFrame.ToArray());
        queue.RemoveFirstFrame();
        Assert.True(queue.IsEmpty);
    }

    [Fact]
    public void The_queue_drops_what_does_not_fit_and_takes_frames_again_once_room_is_made()
    {
        var capacity = 2 * (FrameStream.LengthPrefix + FrameLimits.MaxFrameLength);
        var writer = new FrameQueue(capacity);
        var big = FrameOf(FrameLimits.MaxFrameLength, 1);
        Assert.True(writer.TryQueue(big));
        Assert.True(writer.TryQueue(big));
        Assert.False(writer.TryQueue(FrameOf(14, 2)));
        Assert.False(writer.TryQueue(FrameOf(FrameLimits.MaxFrameLength + 1, 3)));
        Assert.Equal(2, writer.DroppedFrames);
        // Taking part of the first frame makes room at the front, which a new frame gets by compaction.
        writer.Consumed(FrameStream.LengthPrefix + FrameLimits.MaxFrameLength);
        Assert.True(writer.TryQueue(FrameOf(14, 4)));
        Assert.Equal([.. Prefixed(big), .. Prefixed(FrameOf(14, 4))], writer.Pending.ToArray());
        writer.Clear();
        Assert.True(writer.IsEmpty);
    }

    [Property(MaxTest = 100)]
    public Property What_the_queue_holds_the_reader_reads()
    {
        var cases = from lengths in Gen.ListOf(Gen.Choose(14, 20_000)).Select(l => l.Take(20).ToList())
                    from takes in Gen.ListOf(Gen.Choose(1, 50_000))
                    select (lengths, takes);
        return Prop.ForAll(Arb.From(cases), c =>
        {
            var writer = new FrameQueue();
            var frames = c.lengths.Select((length, i) => FrameOf(length, (byte)i)).ToList();
            var stream = new List<byte>();
            using var takes = c.takes.GetEnumerator();
            foreach (var frame in frames)
            {
                Assert.True(writer.TryQueue(frame));
                var take = Math.Min(takes.MoveNext() ? takes.Current : int.MaxValue, writer.Pending.Length);
                stream.AddRange(writer.Pending[..take].ToArray());
                writer.Consumed(take);
            }
            stream.AddRange(writer.Pending.ToArray());
            Assert.Equal(frames, ReadAll(new FrameStreamReader(), [.. stream], c.takes));
        });
    }
}
