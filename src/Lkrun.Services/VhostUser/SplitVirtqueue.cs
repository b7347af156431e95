using System.Runtime.CompilerServices;

namespace Lkrun.Services.VhostUser;

/// <summary>Whoever tells the driver that used buffers are waiting (the ring's call eventfd).</summary>
internal interface IQueueNotifier
{
    void Notify();
}

/// <summary>Where a split ring's three parts live, as front-end (user) addresses, and its size.</summary>
internal readonly record struct SplitRingLayout(ushort Size, ulong DescriptorTable, ulong AvailableRing, ulong UsedRing);

internal enum VirtqueueError
{
    /// <summary>One descriptor chain is malformed; it was returned to the driver unused and the ring goes on.</summary>
    InvalidChain,

    /// <summary>The ring itself is inconsistent (index out of range, impossible count); it is not processed any more.</summary>
    Corrupted,

    /// <summary>The front-end described a ring that does not fit guest memory.</summary>
    BadLayout,

    /// <summary>
    /// The driver chose a ring the device cannot use: a size that is not a power of two, or parts not aligned as
    /// virtio requires. QEMU passes both on from the guest unchecked.
    /// </summary>
    UnusableLayout,
}

/// <summary>The guest (or front-end) broke a virtqueue rule. <see cref="Error"/> says how much is lost.</summary>
internal sealed class VirtqueueException(VirtqueueError error, string message) : Exception(message)
{
    public VirtqueueError Error { get; } = error;
}

/// <summary>
/// The device side of a virtio 1.x split virtqueue in shared guest memory.
/// <para>
/// The driver publishes chains of descriptors through the available ring and the device returns them through the
/// used ring. Everything here is read once from guest memory into locals and validated before use: head and
/// next indexes against the table size, chain length against the queue size (which also ends loops), indirect
/// tables only when negotiated and never nested, readable descriptors before writable ones, and every buffer
/// through <see cref="GuestMemory"/>. A bad chain is returned unused; a bad ring index stops the queue.
/// </para>
/// <para>
/// Notifications follow VIRTIO_RING_F_EVENT_IDX when negotiated: the device writes avail_event (which available
/// index should kick it next) and signals only when the driver's used_event was crossed since the last signal.
/// </para>
/// </summary>
internal sealed unsafe class SplitVirtqueue
{
    private const ushort DescriptorNext = 1;
    private const ushort DescriptorWrite = 2;
    private const ushort DescriptorIndirect = 4;
    private const ushort AvailableNoInterrupt = 1;
    private const ushort UsedNoNotify = 1;
    private const int DescriptorSize = 16;

    private readonly DescriptorChain _chain;
    private readonly ushort _mask;
    private GuestMemory _memory;
    private byte* _descriptors;
    private byte* _available;
    private byte* _used;
    private ushort _nextAvailable;
    private ushort _nextUsed;
    private ushort _publishedUsed;
    private ushort _consideredUsed;
    private ushort _signalledUsed;
    private bool _signalledValid;

    public SplitVirtqueue(GuestMemory memory, SplitRingLayout layout, ulong features, ushort nextAvailable)
    {
        if (layout.Size == 0 || layout.Size > VhostUserLimits.MaxQueueSize || (layout.Size & (layout.Size - 1)) != 0)
        {
            throw new VirtqueueException(VirtqueueError.UnusableLayout, $"queue size {layout.Size} is not a power of two up to {VhostUserLimits.MaxQueueSize}");
        }

        Size = layout.Size;
        _mask = (ushort)(layout.Size - 1);
        EventIndex = (features & VirtioFeatures.RingEventIndex) != 0;
        IndirectDescriptors = (features & VirtioFeatures.RingIndirectDescriptors) != 0;
        _chain = new DescriptorChain(layout.Size);
        _memory = memory;
        Rebind(memory, layout);
        _nextAvailable = nextAvailable;
        // Safe: Rebind translated the used ring with its full size; idx is at offset 2.
        _nextUsed = Volatile.Read(ref *(ushort*)(_used + 2));
        _publishedUsed = _nextUsed;
        _consideredUsed = _nextUsed;
    }

    public ushort Size { get; }

    public bool EventIndex { get; }

    public bool IndirectDescriptors { get; }

    /// <summary>Set once the ring was found inconsistent; nothing is popped from it any more.</summary>
    public bool IsBroken { get; private set; }

    /// <summary>The next available-ring index the device will consume (what GET_VRING_BASE reports).</summary>
    public ushort NextAvailable => _nextAvailable;

    public IQueueNotifier? Notifier { get; set; }

    /// <summary>Re-resolves the ring after the front-end replaced the memory table; indexes carry over.</summary>
    public void Rebind(GuestMemory memory, SplitRingLayout layout)
    {
        Resolve(memory, layout, out var descriptors, out var available, out var used);
        _descriptors = (byte*)descriptors;
        _available = (byte*)available;
        _used = (byte*)used;
        _memory = memory;
    }

    /// <summary>Throws as <see cref="Rebind"/> would, changing nothing: the caller checks every ring before moving any.</summary>
    public void CheckFits(GuestMemory memory, SplitRingLayout layout) => Resolve(memory, layout, out _, out _, out _);

    private void Resolve(GuestMemory memory, SplitRingLayout layout, out nint descriptors, out nint available, out nint used)
    {
        if (layout.Size != Size)
        {
            throw new VirtqueueException(VirtqueueError.BadLayout, $"queue size changed from {Size} to {layout.Size}");
        }

        var eventBytes = EventIndex ? 2UL : 0UL;
        if (layout.DescriptorTable % 16 != 0 || layout.AvailableRing % 2 != 0 || layout.UsedRing % 4 != 0)
        {
            throw new VirtqueueException(VirtqueueError.UnusableLayout, "ring parts are not aligned as virtio requires");
        }

        if (!memory.TryTranslateUser(layout.DescriptorTable, (ulong)Size * DescriptorSize, out descriptors)
            | !memory.TryTranslateUser(layout.AvailableRing, 4 + 2UL * Size + eventBytes, out available)
            | !memory.TryTranslateUser(layout.UsedRing, 4 + 8UL * Size + eventBytes, out used))
        {
            throw new VirtqueueException(VirtqueueError.BadLayout, "ring lies outside guest memory");
        }
    }

    /// <summary>True when the driver has made buffers available that were not popped yet.</summary>
    public bool HasAvailable => !IsBroken && AvailableIndex != _nextAvailable;

    // Safe: Rebind translated the available ring with its full size; idx is at offset 2.
    private ushort AvailableIndex => Volatile.Read(ref *(ushort*)(_available + 2));

    /// <summary>
    /// Takes the next available chain. Returns false when there is none. Throws <see cref="VirtqueueException"/>
    /// for a malformed chain (already returned to the driver with length 0) or a corrupted ring.
    /// </summary>
    public bool TryPop(out DescriptorChain chain)
    {
        chain = _chain;
        if (IsBroken)
        {
            return false;
        }

        // Acquire: the ring entries and descriptors are read only after the index that published them.
        var availableIndex = AvailableIndex;
        if (availableIndex == _nextAvailable)
        {
            return false;
        }

        if ((ushort)(availableIndex - _nextAvailable) > Size)
        {
            IsBroken = true;
            throw new VirtqueueException(VirtqueueError.Corrupted, $"available index {availableIndex} is more than {Size} ahead of {_nextAvailable}");
        }

        // Safe: the masked index stays inside the ring's Size entries.
        var head = *(ushort*)(_available + 4 + 2 * (_nextAvailable & _mask));
        _nextAvailable++;
        if (head >= Size)
        {
            IsBroken = true;
            throw new VirtqueueException(VirtqueueError.Corrupted, $"available head {head} is outside a queue of {Size}");
        }

        var problem = Walk(head);
        if (problem is not null)
        {
            AddUsed(head, 0);
            throw new VirtqueueException(VirtqueueError.InvalidChain, $"chain {head}: {problem}");
        }

        return true;
    }

    /// <summary>Puts the last popped chain back (nothing was written to it).</summary>
    public void UndoPop() => _nextAvailable--;

    /// <summary>Returns a chain to the driver; <paramref name="written"/> is how many bytes the device wrote into it.</summary>
    public void AddUsed(ushort head, uint written)
    {
        // Safe: the masked index stays inside the used ring's Size elements.
        var element = _used + 4 + 8 * (_nextUsed & _mask);
        *(uint*)element = head;
        *(uint*)(element + 4) = written;
        _nextUsed++;
    }

    /// <summary>
    /// Makes the used entries added so far visible to the driver and, with <paramref name="notify"/>, notifies it
    /// if it asked to be. Entries published without notifying are considered at the next notifying call.
    /// </summary>
    public void PublishUsed(bool notify = true)
    {
        if (_nextUsed != _publishedUsed)
        {
            // Release: the used elements are visible before the index that publishes them.
            Volatile.Write(ref *(ushort*)(_used + 2), _nextUsed);
            _publishedUsed = _nextUsed;
        }

        if (notify && _publishedUsed != _consideredUsed)
        {
            _consideredUsed = _publishedUsed;
            if (NeedsNotification())
            {
                Notifier?.Notify();
            }
        }
    }

    /// <summary>Used entries the driver may not have been told about yet.</summary>
    public int UnnotifiedUsed => (ushort)(_publishedUsed - _consideredUsed);

    /// <summary>
    /// Asks the driver to kick when it adds buffers, then re-checks the ring so a buffer added in between is not
    /// missed. Returns true when buffers are available (the caller keeps processing instead of waiting).
    /// </summary>
    public bool EnableNotifications()
    {
        if (IsBroken)
        {
            return false;
        }

        if (EventIndex)
        {
            // Safe: with the event index negotiated, Rebind translated avail_event after the used elements too.
            Volatile.Write(ref *(ushort*)(_used + 4 + 8 * Size), _nextAvailable);
        }
        else
        {
            Volatile.Write(ref *(ushort*)_used, 0);
        }

        // Store-load order: the driver must see the request before the device looks at the index again.
        Interlocked.MemoryBarrier();
        return AvailableIndex != _nextAvailable;
    }

    /// <summary>Tells the driver kicks are not needed while the device is busy with the ring anyway.</summary>
    public void DisableNotifications()
    {
        if (!EventIndex)
        {
            Volatile.Write(ref *(ushort*)_used, UsedNoNotify);
        }
    }

    private bool NeedsNotification()
    {
        // Store-load order: the used index is visible before the driver's wishes are read.
        Interlocked.MemoryBarrier();
        if (!EventIndex)
        {
            return (Volatile.Read(ref *(ushort*)_available) & AvailableNoInterrupt) == 0;
        }

        // Safe: with the event index negotiated, Rebind translated used_event after the ring entries too.
        var usedEvent = Volatile.Read(ref *(ushort*)(_available + 4 + 2 * Size));
        var previous = _signalledUsed;
        var wasValid = _signalledValid;
        _signalledUsed = _nextUsed;
        _signalledValid = true;
        return !wasValid || (ushort)(_nextUsed - usedEvent - 1) < (ushort)(_nextUsed - previous);
    }

    /// <summary>Walks and validates the chain at <paramref name="head"/> into the reusable chain; returns why it is bad, or null.</summary>
    private string? Walk(ushort head)
    {
        _chain.Start(head);
        var table = _descriptors;
        var tableSize = (int)Size;
        var index = (int)head;
        var visited = 0;
        var indirect = false;
        var writableSeen = false;
        while (true)
        {
            if (++visited > tableSize)
            {
                return indirect ? "indirect chain longer than its table (a loop)" : "chain longer than the queue (a loop)";
            }

            // One read of each field: the guest may change the table concurrently. Safe: index < tableSize, and
            // the table (ring or indirect) was translated for tableSize entries.
            var entry = table + index * DescriptorSize;
            var address = Unsafe.ReadUnaligned<ulong>(entry);
            var length = Unsafe.ReadUnaligned<uint>(entry + 8);
            var flags = Unsafe.ReadUnaligned<ushort>(entry + 12);
            var next = Unsafe.ReadUnaligned<ushort>(entry + 14);

            if ((flags & DescriptorIndirect) != 0)
            {
                if (!IndirectDescriptors)
                {
                    return "indirect descriptor without the feature";
                }

                if (indirect)
                {
                    return "nested indirect descriptor";
                }

                if ((flags & DescriptorNext) != 0 || _chain.Readable.Length + _chain.Writable.Length > 0)
                {
                    return "indirect descriptor inside a chain";
                }

                if (length == 0 || length % DescriptorSize != 0 || length / DescriptorSize > Size)
                {
                    return $"indirect table of {length} bytes";
                }

                if (!_memory.TryTranslate(address, length, out var indirectTable))
                {
                    return $"indirect table at 0x{address:x} outside guest memory";
                }

                table = (byte*)indirectTable;
                tableSize = (int)(length / DescriptorSize);
                index = 0;
                visited = 0;
                indirect = true;
                continue;
            }

            var writable = (flags & DescriptorWrite) != 0;
            if (!writable && writableSeen)
            {
                return "readable descriptor after a writable one";
            }

            writableSeen |= writable;
            if (length > 0)
            {
                if (length > int.MaxValue)
                {
                    return $"descriptor of {length} bytes";
                }

                if (!_memory.TryTranslate(address, length, out var host))
                {
                    return $"buffer at 0x{address:x} of {length} bytes outside guest memory";
                }

                if (_chain.Readable.Length + _chain.Writable.Length == _chain.Capacity)
                {
                    return "more segments than the queue size";
                }

                _chain.Add(new GuestSegment(host, (int)length), writable);
            }

            if ((flags & DescriptorNext) == 0)
            {
                return null;
            }

            if (next >= tableSize)
            {
                return $"next index {next} outside a table of {tableSize}";
            }

            index = next;
        }
    }
}
