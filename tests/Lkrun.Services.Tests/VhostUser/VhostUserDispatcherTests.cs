using System.Buffers.Binary;
using Lkrun.Services.Interop;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Tests.VhostUser;

public class VhostUserDispatcherTests : IDisposable
{
    private const ushort RingSize = 8;
    private const ulong ProtocolBit = VirtioFeatures.VhostUserProtocolFeatures;

    private readonly EventLoop _loop = new();
    private readonly RecordingBackend _backend = new();
    private readonly VhostUserDispatcher _dispatcher;
    private readonly MemfdGuestMemory _ram = new(0x10000);
    private readonly FakeVirtqueueDriver[] _drivers;
    private readonly List<FileDescriptor> _kicks = [];
    private readonly List<string> _log = [];

    public VhostUserDispatcherTests()
    {
        _dispatcher = new VhostUserDispatcher(_backend, _loop, _log.Add);
        _drivers = [new FakeVirtqueueDriver(_ram, 0x1000, RingSize), new FakeVirtqueueDriver(_ram, 0x3000, RingSize)];
    }

    public void Dispose()
    {
        _dispatcher.Dispose();
        foreach (var kick in _kicks)
        {
            kick.Dispose();
        }

        _ram.Dispose();
        _loop.Dispose();
    }

    private sealed class RecordingBackend : IVhostUserBackend
    {
        public List<string> Calls { get; } = [];

        public SplitVirtqueue?[] Queues { get; } = new SplitVirtqueue?[2];

        public int QueueCount => 2;

        public ulong Features => VirtioFeatures.Version1 | VirtioFeatures.RingEventIndex;

        public bool TryReadConfig(uint offset, Span<byte> destination)
        {
            if (offset + destination.Length > 8)
            {
                return false;
            }

            for (var i = 0; i < destination.Length; i++)
            {
                destination[i] = (byte)(0xa0 + offset + i);
            }

            return true;
        }

        public void SetFeatures(ulong features) => Calls.Add($"features {features:x}");

        public void QueueReady(int index, SplitVirtqueue queue)
        {
            Queues[index] = queue;
            Calls.Add($"ready {index}");
        }

        public void QueueStopping(int index)
        {
            Queues[index] = null;
            Calls.Add($"stopping {index}");
        }

        public void QueueKicked(int index) => Calls.Add($"kicked {index}");

        public void Reset() => Calls.Add("reset");
    }

    private static FileDescriptor Duplicate(FileDescriptor descriptor)
    {
        const int F_DUPFD_CLOEXEC = 1030;
        return new FileDescriptor(LibC.Check(LibC.fcntl(descriptor.Number, F_DUPFD_CLOEXEC, 0), "fcntl"));
    }

    private static VhostUserMessage Message(VhostUserRequest request, byte[]? body = null, bool needReply = false, params FileDescriptor[] descriptors)
    {
        body ??= [];
        var flags = VhostUserHeader.Version | (needReply ? VhostUserHeader.NeedReplyFlag : 0);
        return new VhostUserMessage(new VhostUserHeader(request, flags, (uint)body.Length), body, [.. descriptors]);
    }

    private static byte[] U64(ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        return bytes;
    }

    private static byte[] State(uint index, uint number)
    {
        var bytes = new byte[8];
        new VringState(index, number).Write(bytes);
        return bytes;
    }

    private byte[]? Send(VhostUserRequest request, byte[]? body = null, bool needReply = false, params FileDescriptor[] descriptors)
    {
        using var message = Message(request, body, needReply, descriptors);
        return _dispatcher.Handle(message);
    }

    private byte[] Address(uint index)
    {
        var driver = _drivers[index];
        var body = new byte[VringAddress.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(body, index);
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(8), FakeGuestMemory.User(driver.DescriptorTable));
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(16), FakeGuestMemory.User(driver.UsedRing));
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(24), FakeGuestMemory.User(driver.AvailableRing));
        return body;
    }

    private byte[] MemoryTable(ulong? size = null)
    {
        var body = new byte[8 + MemoryRegionDescription.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(body, 1);
        var region = _ram.Region;
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(8), region.GuestAddress);
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(16), size ?? region.Size);
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(24), region.UserAddress);
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(32), region.MmapOffset);
        return body;
    }

    /// <summary>QEMU's initialisation: features, protocol features, queue count, owner, call descriptors.</summary>
    private void Initialise(VhostUserProtocolFeatures protocol = VhostUserProtocolFeatures.MultipleQueues | VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.Config)
    {
        Send(VhostUserRequest.GetFeatures);
        Send(VhostUserRequest.GetProtocolFeatures);
        Send(VhostUserRequest.SetProtocolFeatures, U64((ulong)protocol));
        Send(VhostUserRequest.SetOwner);
        for (uint i = 0; i < 2; i++)
        {
            Send(VhostUserRequest.SetVringCall, U64(i), false, EventFd.Create());
        }
    }

    /// <summary>QEMU's device start: features, memory table, then each ring's size, base, addresses, kick and call.</summary>
    private void StartRings(ulong features, bool enable)
    {
        Send(VhostUserRequest.SetFeatures, U64(features));
        Send(VhostUserRequest.SetMemTable, MemoryTable(), false, _ram.Duplicate());
        for (uint i = 0; i < 2; i++)
        {
            Send(VhostUserRequest.SetVringNum, State(i, RingSize));
            Send(VhostUserRequest.SetVringBase, State(i, 0));
            Send(VhostUserRequest.SetVringAddr, Address(i));
            var kick = EventFd.Create();
            _kicks.Add(Duplicate(kick));
            Send(VhostUserRequest.SetVringKick, U64(i), false, kick);
            Send(VhostUserRequest.SetVringCall, U64(i), false, EventFd.Create());
        }

        if (enable)
        {
            for (uint i = 0; i < 2; i++)
            {
                Send(VhostUserRequest.SetVringEnable, State(i, 1));
            }
        }
    }

    [Fact]
    public void Features_include_the_protocol_feature_bit()
    {
        var reply = Send(VhostUserRequest.GetFeatures);

        Assert.Equal(_backend.Features | ProtocolBit, BinaryPrimitives.ReadUInt64LittleEndian(reply));
    }

    [Fact]
    public void Queue_count_and_config_are_answered_once_negotiated()
    {
        Initialise();

        Assert.Equal(2UL, BinaryPrimitives.ReadUInt64LittleEndian(Send(VhostUserRequest.GetQueueNum)));
        var request = new byte[ConfigAccess.HeaderLength + 4];
        BinaryPrimitives.WriteUInt32LittleEndian(request, 2);
        BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(4), 4);
        var reply = Send(VhostUserRequest.GetConfig, request)!;
        Assert.Equal(new byte[] { 0xa2, 0xa3, 0xa4, 0xa5 }, reply[ConfigAccess.HeaderLength..]);

        BinaryPrimitives.WriteUInt32LittleEndian(request, 6);
        Assert.Empty(Send(VhostUserRequest.GetConfig, request)!);
    }

    [Fact]
    public void Rings_become_ready_when_enabled_and_stop_with_their_base()
    {
        Initialise();
        StartRings(_backend.Features | ProtocolBit, enable: false);
        Assert.DoesNotContain("ready 0", _backend.Calls);

        Send(VhostUserRequest.SetVringEnable, State(0, 1));
        Send(VhostUserRequest.SetVringEnable, State(1, 1));
        Assert.Contains("ready 0", _backend.Calls);
        Assert.Contains("ready 1", _backend.Calls);
        Assert.Contains($"features {_backend.Features:x}", _backend.Calls);

        _drivers[1].Post(new DriverBuffer(0x8000, 64, false));
        Assert.True(_backend.Queues[1]!.TryPop(out _));

        Send(VhostUserRequest.SetVringEnable, State(1, 0));
        Assert.Contains("stopping 1", _backend.Calls);
        var reply = Send(VhostUserRequest.GetVringBase, State(1, 0))!;
        Assert.Equal(new VringState(1, 1), VringState.Parse(VhostUserRequest.GetVringBase, reply));
        Assert.False(_dispatcher.Rings[1].IsStarted);
    }

    [Fact]
    public void Kick_eventfd_reaches_the_backend()
    {
        Initialise();
        StartRings(_backend.Features | ProtocolBit, enable: true);

        EventFd.Signal(_kicks[0].Number);
        _loop.Wait(1000);

        Assert.Contains("kicked 0", _backend.Calls);
        Assert.DoesNotContain("kicked 1", _backend.Calls);
    }

    [Fact]
    public void Without_protocol_features_a_ring_is_ready_as_soon_as_it_starts()
    {
        Initialise();
        StartRings(_backend.Features, enable: false);

        Assert.Contains("ready 0", _backend.Calls);
        Assert.Contains("ready 1", _backend.Calls);
    }

    [Fact]
    public void New_memory_table_rebinds_running_rings()
    {
        Initialise();
        StartRings(_backend.Features | ProtocolBit, enable: true);
        var queue = _backend.Queues[0]!;

        Send(VhostUserRequest.SetMemTable, MemoryTable(), false, _ram.Duplicate());
        _drivers[0].Post(new DriverBuffer(0x8000, 64, true));

        Assert.True(queue.TryPop(out var chain));
        Assert.Equal(64, chain.WritableLength);
    }

    [Fact]
    public void A_memory_table_that_leaves_out_a_running_ring_is_refused_and_moves_no_ring()
    {
        Initialise();
        StartRings(_backend.Features | ProtocolBit, enable: true);
        var queue = _backend.Queues[0]!;

        // Ring 0 (at 0x1000) fits the smaller table, ring 1 (at 0x3000) does not.
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetMemTable, MemoryTable(size: 0x2000), false, _ram.Duplicate()));

        // Ring 0 still runs on the whole of the memory it had.
        _drivers[0].Post(new DriverBuffer(0x8000, 64, true));
        Assert.True(queue.TryPop(out var chain));
        Assert.Equal(64, chain.WritableLength);
    }

    [Fact]
    public void A_ring_the_guest_broke_still_stops_through_the_backend()
    {
        Initialise();
        StartRings(_backend.Features | ProtocolBit, enable: true);
        _drivers[0].SetAvailableIndex(RingSize * 4);
        Assert.ThrowsAny<Exception>(() => _backend.Queues[0]!.TryPop(out _));
        Assert.True(_backend.Queues[0]!.IsBroken);

        Send(VhostUserRequest.GetVringBase, State(0, 0));

        Assert.Contains("stopping 0", _backend.Calls);
    }

    [Fact]
    public void Reply_ack_answers_only_when_negotiated_and_asked()
    {
        Initialise();
        Assert.Equal(U64(0), Send(VhostUserRequest.SetOwner, needReply: true));
        Assert.Null(Send(VhostUserRequest.SetOwner));

        var config = new byte[ConfigAccess.HeaderLength + 8];
        BinaryPrimitives.WriteUInt32LittleEndian(config.AsSpan(4), 8);
        Assert.Equal(U64(1), Send(VhostUserRequest.SetConfig, config, needReply: true));
    }

    [Fact]
    public void Reply_ack_is_not_sent_without_the_protocol_feature()
    {
        Initialise(VhostUserProtocolFeatures.Config);

        Assert.Null(Send(VhostUserRequest.SetOwner, needReply: true));
    }

    [Fact]
    public void Requests_out_of_order_or_malformed_are_protocol_errors()
    {
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringNum, State(0, 8)));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.GetQueueNum));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetProtocolFeatures, U64(1UL << 40)));

        Initialise(VhostUserProtocolFeatures.Config);
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.GetQueueNum));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetFeatures, U64(1UL << 60)));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringNum, State(2, 8)));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringNum, State(0, 0)));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringNum, State(0, VhostUserLimits.MaxQueueSize + 1)));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringBase, State(0, 0x10000)));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.GetFeatures, null, false, EventFd.Create()));
        Assert.Throws<VhostUserProtocolException>(() => Send((VhostUserRequest)99));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetMemTable, MemoryTable()));

        // A kick without a descriptor (polling) and a ring started before its size or the memory table.
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringKick, U64(0x100)));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringKick, U64(0), false, EventFd.Create()));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringCall, U64(0), false, EventFd.Create(), EventFd.Create()));
    }

    [Fact]
    public void Ring_size_and_base_cannot_change_while_it_runs()
    {
        Initialise();
        StartRings(_backend.Features | ProtocolBit, enable: true);

        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringNum, State(0, 16)));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringBase, State(0, 3)));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetFeatures, U64(VirtioFeatures.Version1)));
    }

    /// <summary>
    /// QEMU passes on whatever size and ring addresses the guest's driver wrote. A ring the device cannot use stays
    /// stopped, reported once, instead of ending the connection (and with it the device, which QEMU never
    /// reconnects); the driver's next reset starts the rings as usual.
    /// </summary>
    [Fact]
    public void A_ring_the_guest_sized_or_aligned_wrongly_stays_stopped_and_the_next_reset_starts_afresh()
    {
        Initialise();
        Send(VhostUserRequest.SetFeatures, U64(_backend.Features | ProtocolBit));
        Send(VhostUserRequest.SetMemTable, MemoryTable(), false, _ram.Duplicate());
        Send(VhostUserRequest.SetVringNum, State(0, 12));
        Send(VhostUserRequest.SetVringAddr, Address(0));
        Send(VhostUserRequest.SetVringKick, U64(0), false, EventFd.Create());
        Send(VhostUserRequest.SetVringNum, State(1, RingSize));
        var misaligned = Address(1);
        BinaryPrimitives.WriteUInt64LittleEndian(misaligned.AsSpan(8), FakeGuestMemory.User(_drivers[1].DescriptorTable + 8));
        Send(VhostUserRequest.SetVringAddr, misaligned);
        Send(VhostUserRequest.SetVringKick, U64(1), false, EventFd.Create());
        Send(VhostUserRequest.SetVringEnable, State(0, 1));
        Send(VhostUserRequest.SetVringEnable, State(1, 1));

        Assert.All(_dispatcher.Rings, ring => Assert.False(ring.IsStarted));
        Assert.DoesNotContain(_backend.Calls, call => call.StartsWith("ready", StringComparison.Ordinal));
        Assert.Equal("ring 0: queue size 12 is not a power of two up to 32768; the ring stays stopped until the guest resets the device (not reported again)", Assert.Single(_log));

        // The driver resets the device: QEMU stops the rings and starts them again as the driver now set them up.
        Assert.Equal(State(0, 0), Send(VhostUserRequest.GetVringBase, State(0, 0)));
        Assert.Equal(State(1, 0), Send(VhostUserRequest.GetVringBase, State(1, 0)));
        StartRings(_backend.Features | ProtocolBit, enable: true);
        Assert.All(_dispatcher.Rings, ring => Assert.True(ring.IsReady));
        Assert.Single(_log);
    }

    [Fact]
    public void Ring_outside_guest_memory_cannot_start()
    {
        Initialise();
        Send(VhostUserRequest.SetFeatures, U64(_backend.Features | ProtocolBit));
        Send(VhostUserRequest.SetMemTable, MemoryTable(), false, _ram.Duplicate());
        Send(VhostUserRequest.SetVringNum, State(0, RingSize));
        var address = Address(0);
        BinaryPrimitives.WriteUInt64LittleEndian(address.AsSpan(8), FakeGuestMemory.User(0xfff0));
        Send(VhostUserRequest.SetVringAddr, address);

        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringKick, U64(0), false, EventFd.Create()));
    }

    [Fact]
    public void Reset_stops_rings_and_forgets_the_session()
    {
        Initialise();
        StartRings(_backend.Features | ProtocolBit, enable: true);

        _dispatcher.Reset();

        Assert.Equal(["stopping 0", "stopping 1", "reset"], _backend.Calls.TakeLast(3));
        Assert.Null(_dispatcher.Memory);
        Assert.All(_dispatcher.Rings, ring => Assert.False(ring.IsStarted));
        Assert.Throws<VhostUserProtocolException>(() => Send(VhostUserRequest.SetVringNum, State(0, 8)));
    }

    [Fact]
    public void Reset_device_keeps_the_owner_but_drops_rings_and_memory()
    {
        Initialise(VhostUserProtocolFeatures.ResetDevice);
        StartRings(_backend.Features | ProtocolBit, enable: true);

        Send(VhostUserRequest.ResetDevice);

        Assert.Null(_dispatcher.Memory);
        Assert.Contains("reset", _backend.Calls);
        Send(VhostUserRequest.SetVringNum, State(0, 8));
    }
}
