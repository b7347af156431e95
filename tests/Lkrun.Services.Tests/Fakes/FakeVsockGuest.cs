using Lkrun.Services.VhostUser;
using Lkrun.Services.Vsock;

namespace Lkrun.Services.Tests.Fakes;

internal sealed record ReceivedPacket(VsockHeader Header, byte[] Payload);

/// <summary>
/// The packet-level side of a guest's virtio-vsock driver over fake guest memory: receive buffers laid out as
/// Linux 6.1 posts them (a header descriptor and a 4 KiB data descriptor), and transmit packets as a header and
/// a payload descriptor. Tests play the guest's protocol by hand with it.
/// </summary>
internal sealed class FakeVsockGuest : IDisposable
{
    public const ulong Cid = 3;
    public const ushort QueueSize = 128;
    public const ulong Features = VirtioFeatures.Version1 | VirtioFeatures.RingEventIndex | VirtioFeatures.RingIndirectDescriptors;

    private const ulong MemoryBase = 0x10_0000;
    private const int TransmitSlots = 48;
    private const int TransmitSlotSize = VsockLimits.HeaderSize + VsockLimits.MaxPacketPayload;

    private readonly int _receiveBufferSize;
    private readonly int _receiveSlots;
    private readonly ulong _receiveArea;
    private readonly ulong _transmitArea;
    private readonly Stack<int> _freeReceive = new();
    private readonly Stack<int> _freeTransmit = new();
    private readonly Dictionary<ushort, int> _receiveHeads = [];
    private readonly Dictionary<ushort, int> _transmitHeads = [];

    public FakeVsockGuest(ulong features = Features, int receiveBufferSize = 4096, int receiveSlots = 60)
    {
        _receiveBufferSize = receiveBufferSize;
        _receiveSlots = receiveSlots;
        var ringBytes = FakeVirtqueueDriver.Footprint(QueueSize);
        var receiveRing = MemoryBase;
        var transmitRing = (receiveRing + ringBytes + 0xfff) & ~0xfffUL;
        _receiveArea = (transmitRing + ringBytes + 0xfff) & ~0xfffUL;
        _transmitArea = _receiveArea + (ulong)(receiveSlots * (VsockLimits.HeaderSize + receiveBufferSize));
        var end = _transmitArea + (ulong)(TransmitSlots * TransmitSlotSize);
        Memory = new FakeGuestMemory((MemoryBase, (int)(end - MemoryBase)));
        ReceiveDriver = new FakeVirtqueueDriver(Memory, receiveRing, QueueSize);
        TransmitDriver = new FakeVirtqueueDriver(Memory, transmitRing, QueueSize);
        Receive = ReceiveDriver.CreateDeviceQueue(Memory.Memory, features);
        Transmit = TransmitDriver.CreateDeviceQueue(Memory.Memory, features);
        for (var i = receiveSlots - 1; i >= 0; i--)
        {
            _freeReceive.Push(i);
        }

        for (var i = TransmitSlots - 1; i >= 0; i--)
        {
            _freeTransmit.Push(i);
        }
    }

    public FakeGuestMemory Memory { get; }

    public FakeVirtqueueDriver ReceiveDriver { get; }

    public FakeVirtqueueDriver TransmitDriver { get; }

    /// <summary>The device's view of the receive queue.</summary>
    public SplitVirtqueue Receive { get; }

    /// <summary>The device's view of the transmit queue.</summary>
    public SplitVirtqueue Transmit { get; }

    public int PostedReceiveBuffers => _receiveSlots - _freeReceive.Count;

    public static VsockHeader Header(VsockOp op, uint sourcePort, uint destinationPort, uint length = 0, uint flags = 0, uint bufferAllocation = 256 * 1024, uint forwardCount = 0) => new()
    {
        SourceCid = Cid,
        DestinationCid = VsockLimits.HostCid,
        SourcePort = sourcePort,
        DestinationPort = destinationPort,
        Length = length,
        Type = VsockLimits.StreamType,
        Op = op,
        Flags = flags,
        BufferAllocation = bufferAllocation,
        ForwardCount = forwardCount,
    };

    /// <summary>Posts receive buffers (at most <paramref name="count"/>) until the slots run out.</summary>
    public void PostReceiveBuffers(int count = int.MaxValue)
    {
        for (var i = 0; i < count && _freeReceive.Count > 0; i++)
        {
            var slot = _freeReceive.Pop();
            var address = _receiveArea + (ulong)(slot * (VsockLimits.HeaderSize + _receiveBufferSize));
            var head = ReceiveDriver.Post(
                new DriverBuffer(address, VsockLimits.HeaderSize, Writable: true),
                new DriverBuffer(address + VsockLimits.HeaderSize, (uint)_receiveBufferSize, Writable: true));
            _receiveHeads[head] = slot;
        }
    }

    /// <summary>Takes every packet the device delivered; their buffers become free (not reposted).</summary>
    public List<ReceivedPacket> TakeReceived()
    {
        var packets = new List<ReceivedPacket>();
        while (ReceiveDriver.TryTakeUsed(out var head, out var length))
        {
            var slot = _receiveHeads[head];
            _receiveHeads.Remove(head);
            _freeReceive.Push(slot);
            var address = _receiveArea + (ulong)(slot * (VsockLimits.HeaderSize + _receiveBufferSize));
            var header = VsockHeader.Read(Memory.Bytes(address, VsockLimits.HeaderSize));
            if (length != VsockLimits.HeaderSize + header.Length)
            {
                throw new InvalidOperationException($"used length {length} for {header}");
            }

            var payload = Memory.Bytes(address + VsockLimits.HeaderSize, (int)header.Length).ToArray();
            packets.Add(new ReceivedPacket(header, payload));
        }

        return packets;
    }

    /// <summary>Queues a packet on the transmit queue (the payload length is set from <paramref name="payload"/>).</summary>
    public void Send(VsockHeader header, ReadOnlySpan<byte> payload = default)
    {
        ReclaimTransmitted();
        var slot = _freeTransmit.Pop();
        var address = _transmitArea + (ulong)(slot * TransmitSlotSize);
        header.Length = (uint)payload.Length;
        header.Write(Memory.Bytes(address, VsockLimits.HeaderSize));
        ushort head;
        if (payload.IsEmpty)
        {
            head = TransmitDriver.Post(new DriverBuffer(address, VsockLimits.HeaderSize, Writable: false));
        }
        else
        {
            payload.CopyTo(Memory.Bytes(address + VsockLimits.HeaderSize, payload.Length));
            head = TransmitDriver.Post(
                new DriverBuffer(address, VsockLimits.HeaderSize, Writable: false),
                new DriverBuffer(address + VsockLimits.HeaderSize, (uint)payload.Length, Writable: false));
        }

        _transmitHeads[head] = slot;
    }

    /// <summary>Queues a raw header whose length field is left as given (for malformed packets).</summary>
    public void SendRaw(VsockHeader header, int payloadBytes)
    {
        ReclaimTransmitted();
        var slot = _freeTransmit.Pop();
        var address = _transmitArea + (ulong)(slot * TransmitSlotSize);
        header.Write(Memory.Bytes(address, VsockLimits.HeaderSize));
        var head = TransmitDriver.Post(new DriverBuffer(address, (uint)(VsockLimits.HeaderSize + payloadBytes), Writable: false));
        _transmitHeads[head] = slot;
    }

    public void ReclaimTransmitted()
    {
        while (TransmitDriver.TryTakeUsed(out var head, out _))
        {
            if (_transmitHeads.Remove(head, out var slot))
            {
                _freeTransmit.Push(slot);
            }
        }
    }

    public void Dispose() => Memory.Dispose();
}
