using System.Buffers.Binary;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.VhostUser;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// A split virtqueue whose descriptor table, rings and indirect tables the guest wrote at will, in guest memory
/// whose regions touch inaccessible guard pages: popping chains fails only with <see cref="VirtqueueException"/>,
/// every segment lies inside one region (every byte is touched, so a stray one crashes on a guard page), the
/// lengths add up, and returning chains writes only the used ring.
/// <para>
/// Input: byte 0 the features (bit 0 indirect, bit 1 event index), the queue size (bits 2-4: 1 to 128) and whether
/// bytes 3-8 place the ring parts (bit 5); bytes 1-2 the device's next available index; then the ring's bytes as the
/// driver lays them out, then the data region's first bytes (where indirect tables go).
/// </para>
/// </summary>
internal sealed class VirtqueueTarget : IFuzzTarget
{
    public const ulong RingBase = 0x1_0000;
    public const int RingBytes = 0x1000;
    public const ulong Data = 0x2_0000;
    public const int DataBytes = 0x1_0000;
    private const int ParameterBytes = 9;

    private readonly FakeGuestMemory _memory = new((RingBase, RingBytes), (Data, DataBytes));


    public IEnumerable<byte[]> Seeds()
    {
        yield return Seed(3, 8, driver =>
        {
            driver.Post(new DriverBuffer(Data, 44, false), new DriverBuffer(Data + 0x100, 100, false), new DriverBuffer(Data + 0x1000, 4096, true));
            driver.PostIndirect(Data + 0x800, new DriverBuffer(Data + 0x2000, 44, false), new DriverBuffer(Data + 0x3000, 64, true));
            driver.Post(new DriverBuffer(Data + 0x4000, 16, true));
        });
        yield return Seed(1, 4, driver =>
        {
            driver.WriteDescriptor(0, Data, 16, FakeVirtqueueDriver.Next, 1);
            driver.WriteDescriptor(1, Data, 16, FakeVirtqueueDriver.Next, 0);
            driver.Publish(0);
            driver.Post(new DriverBuffer(Data + DataBytes - 8, 8, false));
        });
        yield return Seed(2, 128, driver =>
        {
            for (var i = 0; i < 20; i++)
            {
                driver.Post(new DriverBuffer(Data + (ulong)(i * 0x100), 44, false), new DriverBuffer(Data + (ulong)(i * 0x100 + 44), 200, true));
            }
        });
    }

    /// <summary>The input that lays out a queue as the driver posted it.</summary>
    private byte[] Seed(int features, ushort size, Action<FakeVirtqueueDriver> post)
    {
        Clear();
        post(new FakeVirtqueueDriver(_memory, RingBase, size));
        var ring = (int)FakeVirtqueueDriver.Footprint(size);
        var input = new byte[ParameterBytes + ring + 0x5000];
        input[0] = (byte)(features | (int.Log2(size) << 2));
        _memory.Bytes(RingBase, ring).CopyTo(input.AsSpan(ParameterBytes));
        _memory.Bytes(Data, 0x5000).CopyTo(input.AsSpan(ParameterBytes + ring));
        return input;
    }

    private void Clear()
    {
        _memory.Bytes(RingBase, RingBytes).Clear();
        _memory.Bytes(Data, DataBytes).Clear();
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length < ParameterBytes)
        {
            return;
        }
        Clear();
        var features = VirtioFeatures.Version1
            | ((input[0] & 1) != 0 ? VirtioFeatures.RingIndirectDescriptors : 0)
            | ((input[0] & 2) != 0 ? VirtioFeatures.RingEventIndex : 0);
        var size = (ushort)(1 << ((input[0] >> 2) & 7));
        var nextAvailable = BinaryPrimitives.ReadUInt16LittleEndian(input[1..]);
        var driver = new FakeVirtqueueDriver(_memory, RingBase, size);
        var layout = driver.Layout;
        if ((input[0] & 0x20) != 0)
        {
            layout = new SplitRingLayout(
                size,
                FakeGuestMemory.User(RingBase + BinaryPrimitives.ReadUInt16LittleEndian(input[3..])),
                FakeGuestMemory.User(RingBase + BinaryPrimitives.ReadUInt16LittleEndian(input[5..])),
                FakeGuestMemory.User(RingBase + BinaryPrimitives.ReadUInt16LittleEndian(input[7..])));
        }
        var rest = input[ParameterBytes..];
        var ring = rest[..Math.Min(rest.Length, (int)FakeVirtqueueDriver.Footprint(size))];
        ring.CopyTo(_memory.Bytes(RingBase, ring.Length));
        var data = rest[ring.Length..];
        data[..Math.Min(data.Length, DataBytes)].CopyTo(_memory.Bytes(Data, DataBytes));

        SplitVirtqueue queue;
        try
        {
            queue = new SplitVirtqueue(_memory.Memory, layout, features, nextAvailable);
        }
        catch (VirtqueueException e)
        {
            Check.That(e.Error is VirtqueueError.BadLayout or VirtqueueError.UnusableLayout, "a ring that cannot be placed or used is a bad or unusable layout");
            return;
        }
        for (var attempt = 0; attempt < 2 * size + 4; attempt++)
        {
            try
            {
                if (!queue.TryPop(out var chain))
                {
                    break;
                }
                Check.That(chain.Head < size, "the head is a descriptor of the table");
                CheckSegments(chain.Readable, chain.ReadableLength);
                CheckSegments(chain.Writable, chain.WritableLength);
                var scratch = new byte[chain.ReadableLength];
                Check.That(chain.CopyFromReadable(0, scratch) == scratch.Length, "every readable byte can be read");
                Check.That(chain.CopyToWritable(0, new byte[chain.WritableLength]) == chain.WritableLength, "every writable byte can be written");
                queue.AddUsed(chain.Head, (uint)chain.WritableLength);
            }
            catch (VirtqueueException e)
            {
                Check.That(e.Error is VirtqueueError.InvalidChain or VirtqueueError.Corrupted, "a bad chain or ring is reported as such");
            }
            queue.PublishUsed();
        }
    }

    private void CheckSegments(ReadOnlySpan<GuestSegment> segments, long total)
    {
        long sum = 0;
        foreach (var segment in segments)
        {
            Check.That(segment.Length > 0, "no segment is empty");
            var inside = false;
            foreach (var region in _memory.Memory.Regions)
            {
                inside |= segment.Host >= region.Host && segment.Host + segment.Length <= region.Host + (nint)region.Size;
            }
            Check.That(inside, "a segment lies inside one region of guest memory");
            sum += segment.Length;
        }
        Check.That(sum == total, "the segments add up to the chain's length");
    }
}
