using System.Buffers.Binary;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Tests.Fakes;

/// <summary>Test-side access to guest memory by guest-physical address.</summary>
internal interface IGuestBytes
{
    Span<byte> Bytes(ulong guestAddress, int length);
}

/// <summary>One buffer of a chain the fake driver posts: guest address, length, device-writable or not.</summary>
internal readonly record struct DriverBuffer(ulong Address, uint Length, bool Writable);

/// <summary>
/// The guest driver's side of a split virtqueue in <see cref="FakeGuestMemory"/>: posts chains (direct or
/// indirect), reads the used ring, and can write raw (malformed) descriptors for tests of the device side.
/// </summary>
internal sealed class FakeVirtqueueDriver
{
    public const ushort Next = 1;
    public const ushort Write = 2;
    public const ushort Indirect = 4;

    private readonly IGuestBytes _memory;
    private readonly Stack<ushort> _free = new();
    private readonly Dictionary<ushort, List<ushort>> _chains = [];
    private ushort _availableIndex;
    private ushort _usedSeen;

    public FakeVirtqueueDriver(IGuestBytes memory, ulong ringBase, ushort size)
    {
        _memory = memory;
        Size = size;
        DescriptorTable = ringBase;
        AvailableRing = ringBase + 16UL * size;
        UsedRing = (AvailableRing + 6UL + 2UL * size + 3) & ~3UL;
        for (var i = size - 1; i >= 0; i--)
        {
            _free.Push((ushort)i);
        }
    }

    public ushort Size { get; }

    public ulong DescriptorTable { get; }

    public ulong AvailableRing { get; }

    public ulong UsedRing { get; }

    /// <summary>Bytes of guest memory the ring occupies from its base.</summary>
    public static ulong Footprint(ushort size) => ((16UL * size + 6UL + 2UL * size + 3) & ~3UL) + 6UL + 8UL * size;

    public SplitRingLayout Layout => new(Size, FakeGuestMemory.User(DescriptorTable), FakeGuestMemory.User(AvailableRing), FakeGuestMemory.User(UsedRing));

    public int FreeDescriptors => _free.Count;

    public SplitVirtqueue CreateDeviceQueue(GuestMemory memory, ulong features, ushort nextAvailable = 0) => new(memory, Layout, features, nextAvailable);

    /// <summary>Chains the buffers through free descriptors and publishes the head; returns the head.</summary>
    public ushort Post(params DriverBuffer[] buffers)
    {
        var indexes = new List<ushort>();
        foreach (var _ in buffers)
        {
            indexes.Add(_free.Pop());
        }

        for (var i = 0; i < buffers.Length; i++)
        {
            var flags = (ushort)((buffers[i].Writable ? Write : 0) | (i + 1 < buffers.Length ? Next : 0));
            WriteDescriptor(indexes[i], buffers[i].Address, buffers[i].Length, flags, i + 1 < buffers.Length ? indexes[i + 1] : (ushort)0);
        }

        _chains[indexes[0]] = indexes;
        Publish(indexes[0]);
        return indexes[0];
    }

    /// <summary>Posts the buffers as an indirect table written at <paramref name="tableAddress"/>.</summary>
    public ushort PostIndirect(ulong tableAddress, params DriverBuffer[] buffers)
    {
        for (var i = 0; i < buffers.Length; i++)
        {
            var entry = _memory.Bytes(tableAddress + 16UL * (ulong)i, 16);
            BinaryPrimitives.WriteUInt64LittleEndian(entry, buffers[i].Address);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[8..], buffers[i].Length);
            BinaryPrimitives.WriteUInt16LittleEndian(entry[12..], (ushort)((buffers[i].Writable ? Write : 0) | (i + 1 < buffers.Length ? Next : 0)));
            BinaryPrimitives.WriteUInt16LittleEndian(entry[14..], (ushort)(i + 1));
        }

        var head = _free.Pop();
        WriteDescriptor(head, tableAddress, (uint)(16 * buffers.Length), Indirect, 0);
        _chains[head] = [head];
        Publish(head);
        return head;
    }

    public void WriteDescriptor(ushort index, ulong address, uint length, ushort flags, ushort next)
    {
        var entry = _memory.Bytes(DescriptorTable + 16UL * index, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(entry, address);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[8..], length);
        BinaryPrimitives.WriteUInt16LittleEndian(entry[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(entry[14..], next);
    }

    /// <summary>Puts <paramref name="head"/> in the available ring and advances its index.</summary>
    public void Publish(ushort head)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_memory.Bytes(AvailableRing + 4 + 2UL * (ulong)(_availableIndex % Size), 2), head);
        _availableIndex++;
        SetAvailableIndex(_availableIndex);
    }

    public void SetAvailableIndex(ushort index) => BinaryPrimitives.WriteUInt16LittleEndian(_memory.Bytes(AvailableRing + 2, 2), index);

    public ushort UsedIndex => BinaryPrimitives.ReadUInt16LittleEndian(_memory.Bytes(UsedRing + 2, 2));

    /// <summary>avail_event, written by the device under VIRTIO_RING_F_EVENT_IDX.</summary>
    public ushort AvailableEvent => BinaryPrimitives.ReadUInt16LittleEndian(_memory.Bytes(UsedRing + 4 + 8UL * Size, 2));

    /// <summary>used_event: the driver wants an interrupt once the used index passes it.</summary>
    public void SetUsedEvent(ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(_memory.Bytes(AvailableRing + 4 + 2UL * Size, 2), value);

    public void SetNoInterrupt(bool suppress) => BinaryPrimitives.WriteUInt16LittleEndian(_memory.Bytes(AvailableRing, 2), (ushort)(suppress ? 1 : 0));

    public ushort UsedFlags => BinaryPrimitives.ReadUInt16LittleEndian(_memory.Bytes(UsedRing, 2));

    /// <summary>Takes the next used element; its descriptors become free again.</summary>
    public bool TryTakeUsed(out ushort head, out uint length)
    {
        head = 0;
        length = 0;
        if (_usedSeen == UsedIndex)
        {
            return false;
        }

        var element = _memory.Bytes(UsedRing + 4 + 8UL * (ulong)(_usedSeen % Size), 8);
        head = (ushort)BinaryPrimitives.ReadUInt32LittleEndian(element);
        length = BinaryPrimitives.ReadUInt32LittleEndian(element[4..]);
        _usedSeen++;
        if (_chains.Remove(head, out var indexes))
        {
            foreach (var index in indexes)
            {
                _free.Push(index);
            }
        }

        return true;
    }
}
