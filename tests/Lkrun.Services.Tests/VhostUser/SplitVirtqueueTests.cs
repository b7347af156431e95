using FsCheck.Xunit;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Tests.VhostUser;

public class SplitVirtqueueTests : IDisposable
{
    private const ulong RingBase = 0x1_0000;
    private const ulong Data = 0x2_0000;
    private const ushort Size = 8;
    private const ulong AllFeatures = VirtioFeatures.Version1 | VirtioFeatures.RingEventIndex | VirtioFeatures.RingIndirectDescriptors;

    private readonly FakeGuestMemory _memory = new((RingBase, 0x1000), (Data, 0x1_0000));
    private readonly FakeVirtqueueDriver _driver;

    public SplitVirtqueueTests()
    {
        _driver = new FakeVirtqueueDriver(_memory, RingBase, Size);
    }

    public void Dispose() => _memory.Dispose();

    private sealed class CountingNotifier : IQueueNotifier
    {
        public int Count { get; private set; }

        public void Notify() => Count++;
    }

    [Fact]
    public void Chain_yields_readable_then_writable_segments_in_guest_memory()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        var head = _driver.Post(new DriverBuffer(Data, 44, false), new DriverBuffer(Data + 0x100, 100, false), new DriverBuffer(Data + 0x1000, 4096, true));

        Assert.True(queue.TryPop(out var chain));
        Assert.Equal(head, chain.Head);
        Assert.Equal(2, chain.Readable.Length);
        Assert.Equal(144, chain.ReadableLength);
        Assert.Equal(4096, chain.WritableLength);
        Assert.True(_memory.Memory.TryTranslate(Data + 0x1000, 4096, out var host));
        Assert.Equal(host, chain.Writable[0].Host);
        Assert.False(queue.TryPop(out _));
    }

    [Fact]
    public void Copies_cross_segment_boundaries()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        _driver.Post(new DriverBuffer(Data, 3, true), new DriverBuffer(Data + 0x100, 5, true));
        Assert.True(queue.TryPop(out var chain));

        Assert.Equal(8, chain.CopyToWritable(0, "abcdefgh"u8));
        Assert.Equal("abc"u8.ToArray(), _memory.Bytes(Data, 3).ToArray());
        Assert.Equal("defgh"u8.ToArray(), _memory.Bytes(Data + 0x100, 5).ToArray());
        Assert.Equal(2, chain.CopyToWritable(6, "xyz"u8));
    }

    [Fact]
    public void Undone_pop_returns_the_same_chain()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        var head = _driver.Post(new DriverBuffer(Data, 16, true));
        Assert.True(queue.TryPop(out _));

        queue.UndoPop();

        Assert.True(queue.TryPop(out var again));
        Assert.Equal(head, again.Head);
    }

    [Fact]
    public void Indirect_table_is_walked_when_negotiated()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        _driver.PostIndirect(Data + 0x8000, new DriverBuffer(Data, 44, false), new DriverBuffer(Data + 0x100, 64, true));

        Assert.True(queue.TryPop(out var chain));
        Assert.Equal(44, chain.ReadableLength);
        Assert.Equal(64, chain.WritableLength);
    }

    [Fact]
    public void Indirect_table_without_the_feature_is_an_invalid_chain_returned_unused()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, VirtioFeatures.Version1);
        var head = _driver.PostIndirect(Data + 0x8000, new DriverBuffer(Data, 44, false));

        var error = Assert.Throws<VirtqueueException>(() => queue.TryPop(out _));
        Assert.Equal(VirtqueueError.InvalidChain, error.Error);
        queue.PublishUsed();
        Assert.True(_driver.TryTakeUsed(out var usedHead, out var length));
        Assert.Equal((head, 0u), (usedHead, length));
        Assert.False(queue.IsBroken);
    }

    [Fact]
    public void Descriptor_loop_is_an_invalid_chain()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        _driver.WriteDescriptor(0, Data, 16, FakeVirtqueueDriver.Next, 1);
        _driver.WriteDescriptor(1, Data, 16, FakeVirtqueueDriver.Next, 0);
        _driver.Publish(0);

        Assert.Equal(VirtqueueError.InvalidChain, Assert.Throws<VirtqueueException>(() => queue.TryPop(out _)).Error);
    }

    [Fact]
    public void Indirect_loop_and_nested_indirect_are_invalid_chains()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        var table = Data + 0x8000;
        // Entry 0 points to itself.
        _driver.PostIndirect(table, new DriverBuffer(Data, 16, false));
        _memory.Bytes(table + 12, 2)[0] = (byte)FakeVirtqueueDriver.Next;
        Assert.Equal(VirtqueueError.InvalidChain, Assert.Throws<VirtqueueException>(() => queue.TryPop(out _)).Error);

        _driver.PostIndirect(table, new DriverBuffer(Data, 16, false));
        _memory.Bytes(table + 12, 2)[0] = (byte)FakeVirtqueueDriver.Indirect;
        Assert.Equal(VirtqueueError.InvalidChain, Assert.Throws<VirtqueueException>(() => queue.TryPop(out _)).Error);
    }

    [Theory]
    [InlineData(0x10UL, 16u)]
    [InlineData(0x2_0000UL + 0xfff0, 0x20u)]
    [InlineData(ulong.MaxValue - 4, 16u)]
    public void Buffer_outside_guest_memory_is_an_invalid_chain(ulong address, uint length)
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        _driver.Post(new DriverBuffer(address, length, true));

        Assert.Equal(VirtqueueError.InvalidChain, Assert.Throws<VirtqueueException>(() => queue.TryPop(out _)).Error);
    }

    [Fact]
    public void Readable_after_writable_and_next_out_of_range_are_invalid_chains()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        _driver.Post(new DriverBuffer(Data, 16, true), new DriverBuffer(Data + 16, 16, false));
        Assert.Equal(VirtqueueError.InvalidChain, Assert.Throws<VirtqueueException>(() => queue.TryPop(out _)).Error);

        _driver.WriteDescriptor(5, Data, 16, FakeVirtqueueDriver.Next, Size);
        _driver.Publish(5);
        Assert.Equal(VirtqueueError.InvalidChain, Assert.Throws<VirtqueueException>(() => queue.TryPop(out _)).Error);
    }

    [Fact]
    public void Head_outside_the_queue_breaks_the_ring()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        _driver.Publish(Size);

        Assert.Equal(VirtqueueError.Corrupted, Assert.Throws<VirtqueueException>(() => queue.TryPop(out _)).Error);
        Assert.True(queue.IsBroken);
        _driver.Post(new DriverBuffer(Data, 16, true));
        Assert.False(queue.TryPop(out _));
    }

    [Fact]
    public void Available_index_running_too_far_ahead_breaks_the_ring()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        _driver.SetAvailableIndex(Size + 1);

        Assert.Equal(VirtqueueError.Corrupted, Assert.Throws<VirtqueueException>(() => queue.TryPop(out _)).Error);
    }

    [Fact]
    public void Used_entries_are_published_together_and_notify_without_event_index()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, VirtioFeatures.Version1);
        var notifier = new CountingNotifier();
        queue.Notifier = notifier;
        var first = _driver.Post(new DriverBuffer(Data, 16, true));
        var second = _driver.Post(new DriverBuffer(Data + 16, 16, true));
        Assert.True(queue.TryPop(out var chain));
        queue.AddUsed(chain.Head, 7);
        Assert.True(queue.TryPop(out chain));
        queue.AddUsed(chain.Head, 9);
        Assert.Equal(0, _driver.UsedIndex);

        queue.PublishUsed();

        Assert.Equal(2, _driver.UsedIndex);
        Assert.Equal(1, notifier.Count);
        Assert.True(_driver.TryTakeUsed(out var head, out var length));
        Assert.Equal((first, 7u), (head, length));
        Assert.True(_driver.TryTakeUsed(out head, out length));
        Assert.Equal((second, 9u), (head, length));

        _driver.SetNoInterrupt(true);
        _driver.Post(new DriverBuffer(Data, 16, true));
        Assert.True(queue.TryPop(out chain));
        queue.AddUsed(chain.Head, 1);
        queue.PublishUsed();
        Assert.Equal(1, notifier.Count);
    }

    [Fact]
    public void Event_index_signals_only_when_used_event_is_crossed()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        var notifier = new CountingNotifier();
        queue.Notifier = notifier;

        void Complete()
        {
            _driver.Post(new DriverBuffer(Data, 16, true));
            Assert.True(queue.TryPop(out var chain));
            queue.AddUsed(chain.Head, 0);
            queue.PublishUsed();
            _driver.TryTakeUsed(out _, out _);
        }

        // The driver asks for an interrupt when used index 3 is reached (used_event 2).
        _driver.SetUsedEvent(2);
        Complete();
        Assert.Equal(1, notifier.Count); // the first signal is always sent
        Complete();
        Assert.Equal(1, notifier.Count);
        Complete();
        Assert.Equal(2, notifier.Count);
        Complete();
        Assert.Equal(2, notifier.Count);
    }

    [Fact]
    public void Enabling_notifications_writes_available_event_and_reports_pending_buffers()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, AllFeatures);
        _driver.Post(new DriverBuffer(Data, 16, true));
        Assert.True(queue.TryPop(out _));

        Assert.False(queue.EnableNotifications());
        Assert.Equal(1, _driver.AvailableEvent);

        _driver.Post(new DriverBuffer(Data, 16, true));
        Assert.True(queue.EnableNotifications());
    }

    [Fact]
    public void Notifications_without_event_index_use_the_used_flags()
    {
        var queue = _driver.CreateDeviceQueue(_memory.Memory, VirtioFeatures.Version1);

        queue.DisableNotifications();
        Assert.Equal(1, _driver.UsedFlags);
        queue.EnableNotifications();
        Assert.Equal(0, _driver.UsedFlags);
    }

    /// <summary>Size and alignment are the guest driver's choice (unusable); lying outside memory is the front-end's error.</summary>
    [Theory]
    [InlineData((ushort)3, 0UL, true)]
    [InlineData((ushort)8, 8UL, true)]
    [InlineData((ushort)512, 0UL, false)]
    public void Layout_must_be_a_power_of_two_aligned_and_inside_memory(ushort size, ulong misalignment, bool guestsChoice)
    {
        var error = guestsChoice ? VirtqueueError.UnusableLayout : VirtqueueError.BadLayout;
        var layout = new SplitRingLayout(size, FakeGuestMemory.User(RingBase) + misalignment, FakeGuestMemory.User(RingBase + 0x200), FakeGuestMemory.User(RingBase + 0x400));

        Assert.Equal(error, Assert.Throws<VirtqueueException>(() => new SplitVirtqueue(_memory.Memory, layout, AllFeatures, 0)).Error);
    }

    [Property(MaxTest = 400)]
    public void Random_rings_yield_only_chains_inside_guest_memory_or_typed_errors(int seed)
    {
        var random = new Random(seed);
        var size = (ushort)(1 << random.Next(0, 8));
        var features = VirtioFeatures.Version1
            | (random.Next(2) == 0 ? VirtioFeatures.RingEventIndex : 0)
            | (random.Next(2) == 0 ? VirtioFeatures.RingIndirectDescriptors : 0);
        using var memory = new FakeGuestMemory((RingBase, 0x2000), (Data, 0x1_0000));
        var driver = new FakeVirtqueueDriver(memory, RingBase, size);

        ulong RandomAddress() => random.Next(4) switch
        {
            0 => (ulong)random.NextInt64(),
            1 => Data + (ulong)random.Next(0x1_0000 + 64) - 32,
            2 => RingBase + (ulong)random.Next(0x2000),
            _ => Data + (ulong)random.Next(0x1_0000),
        };

        uint RandomLength() => random.Next(4) switch
        {
            0 => (uint)random.Next(),
            1 => (uint)random.Next(0, 64),
            _ => (uint)random.Next(0, 0x2000),
        };

        for (ushort i = 0; i < size; i++)
        {
            driver.WriteDescriptor(i, RandomAddress(), RandomLength(), (ushort)random.Next(8), (ushort)random.Next(size + 2));
        }

        // Some indirect tables in the data area, also random.
        random.NextBytes(memory.Bytes(Data + 0x8000, 0x1000));
        for (var i = 0; i < 64; i++)
        {
            var entry = memory.Bytes(Data + 0x8000 + (ulong)(16 * i), 16);
            BitConverter.TryWriteBytes(entry, RandomAddress());
            BitConverter.TryWriteBytes(entry[8..], RandomLength() % 0x400);
        }

        for (var i = 0; i < size; i++)
        {
            if (random.Next(3) == 0)
            {
                driver.WriteDescriptor((ushort)random.Next(size), Data + 0x8000 + (ulong)(16 * random.Next(8)), (uint)(16 * random.Next(0, 10)), FakeVirtqueueDriver.Indirect, 0);
            }

            driver.Publish((ushort)(random.Next(8) == 0 ? random.Next(ushort.MaxValue) : random.Next(size)));
        }

        if (random.Next(6) == 0)
        {
            driver.SetAvailableIndex((ushort)random.Next(ushort.MaxValue));
        }

        var queue = driver.CreateDeviceQueue(memory.Memory, features, (ushort)(random.Next(4) == 0 ? random.Next(ushort.MaxValue) : 0));
        for (var attempt = 0; attempt < 2 * size + 4; attempt++)
        {
            try
            {
                if (!queue.TryPop(out var chain))
                {
                    break;
                }

                foreach (var segment in chain.Readable.ToArray().Concat(chain.Writable.ToArray()))
                {
                    Assert.True(segment.Length > 0);
                    Assert.Contains(memory.Memory.Regions, region =>
                        segment.Host >= region.Host && segment.Host + segment.Length <= region.Host + (nint)region.Size);
                }

                // Touch every byte: a segment outside the regions would hit a guard page and crash.
                var scratch = new byte[chain.ReadableLength];
                chain.CopyFromReadable(0, scratch);
                chain.CopyToWritable(0, new byte[chain.WritableLength]);
                queue.AddUsed(chain.Head, (uint)chain.WritableLength);
            }
            catch (VirtqueueException)
            {
            }

            queue.PublishUsed();
        }
    }
}
