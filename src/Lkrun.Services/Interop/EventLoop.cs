using System.Runtime.InteropServices;

namespace Lkrun.Services.Interop;

/// <summary>Something that owns a descriptor registered with an <see cref="EventLoop"/>.</summary>
internal interface IEventHandler
{
    /// <summary>Called on the loop's thread with the epoll event bits that fired.</summary>
    void OnEvents(uint events);
}

/// <summary>
/// A level-triggered epoll loop, single-threaded: handlers run on the thread that calls <see cref="Wait"/>, and
/// only <see cref="Wake"/> may be called from elsewhere.
/// </summary>
internal sealed unsafe class EventLoop : IDisposable
{
    public const uint Readable = 0x001;
    public const uint Writable = 0x004;
    public const uint Error = 0x008;
    public const uint HangUp = 0x010;

    private const int MaxEventsPerWait = 256;

    private static readonly bool PackedEvents = RuntimeInformation.ProcessArchitecture == Architecture.X64;
    private static readonly int EventSize = PackedEvents ? sizeof(LibC.PackedEpollEvent) : sizeof(LibC.EpollEvent);

    private readonly FileDescriptor _epoll;
    private readonly FileDescriptor _wake;
    private readonly MemoryMapping _events;
    private readonly List<Slot> _slots = [];
    private readonly Lock _wakeGate = new();
    private bool _disposed;
    private readonly Stack<int> _freeSlots = new();

    private struct Slot
    {
        public IEventHandler? Handler;
        public uint Generation;
    }

    public EventLoop()
    {
        _epoll = new FileDescriptor(LibC.Check(LibC.epoll_create1(LibC.EPOLL_CLOEXEC), "epoll_create1"));
        _wake = EventFd.Create();
        _events = MemoryMapping.MapAnonymous((nuint)(EventSize * MaxEventsPerWait));
        // Data 0 is never a handler's token (generations start at 1), so it marks the wake descriptor.
        Control(LibC.EPOLL_CTL_ADD, _wake.Number, Readable, 0);
    }

    /// <summary>Watches <paramref name="fd"/> for <paramref name="events"/>; error and hang-up are always reported.</summary>
    public EventRegistration Register(int fd, uint events, IEventHandler handler)
    {
        int index;
        if (_freeSlots.Count > 0)
        {
            index = _freeSlots.Pop();
        }
        else
        {
            index = _slots.Count;
            _slots.Add(default);
        }

        var slot = _slots[index];
        slot.Handler = handler;
        slot.Generation = slot.Generation == uint.MaxValue ? 1 : slot.Generation + 1;
        _slots[index] = slot;
        var registration = new EventRegistration(this, fd, index, slot.Generation, events);
        Control(LibC.EPOLL_CTL_ADD, fd, events, registration.Token);
        return registration;
    }

    /// <summary>
    /// Waits up to <paramref name="timeoutMilliseconds"/> (-1: forever) and runs the handlers of the descriptors
    /// that are ready. Returns false when woken by <see cref="Wake"/>.
    /// </summary>
    public bool Wait(int timeoutMilliseconds)
    {
        var buffer = (byte*)_events.Address;
        // Safe: the buffer holds MaxEventsPerWait events of the kernel's layout for this architecture.
        var count = LibC.epoll_wait(_epoll.Number, buffer, MaxEventsPerWait, timeoutMilliseconds);
        if (count == -1)
        {
            return LibC.LastError == LibC.EINTR ? true : throw LibC.Failure("epoll_wait");
        }

        var woken = false;
        for (var i = 0; i < count; i++)
        {
            uint events;
            ulong data;
            if (PackedEvents)
            {
                var entry = (LibC.PackedEpollEvent*)(buffer + i * EventSize);
                (events, data) = (entry->Events, entry->Data);
            }
            else
            {
                var entry = (LibC.EpollEvent*)(buffer + i * EventSize);
                (events, data) = (entry->Events, entry->Data);
            }

            if (data == 0)
            {
                EventFd.Drain(_wake.Number);
                woken = true;
                continue;
            }

            var index = (int)(uint)data;
            var generation = (uint)(data >> 32);
            // A handler earlier in this batch may have removed (and a new one reused) this slot.
            if (index < _slots.Count && _slots[index].Generation == generation && _slots[index].Handler is { } handler)
            {
                handler.OnEvents(events);
            }
        }

        return !woken;
    }

    /// <summary>Makes the current or next <see cref="Wait"/> return; callable from any thread, also after disposal.</summary>
    public void Wake()
    {
        // Under the gate the descriptor cannot be closed (and its number reused) between the check and the write.
        lock (_wakeGate)
        {
            if (!_disposed)
            {
                EventFd.Signal(_wake.Number);
            }
        }
    }

    internal void Modify(EventRegistration registration, uint events) =>
        Control(LibC.EPOLL_CTL_MOD, registration.Fd, events, registration.Token);

    internal void Remove(EventRegistration registration)
    {
        // The descriptor may already be closed, which removed it from the set; only the slot matters then.
        LibC.epoll_ctl(_epoll.Number, LibC.EPOLL_CTL_DEL, registration.Fd, null);
        var slot = _slots[registration.Index];
        slot.Handler = null;
        slot.Generation++;
        _slots[registration.Index] = slot;
        _freeSlots.Push(registration.Index);
    }

    private void Control(int operation, int fd, uint events, ulong data)
    {
        var result = PackedEvents
            ? ControlPacked(operation, fd, events, data)
            : ControlAligned(operation, fd, events, data);
        LibC.Check(result, "epoll_ctl");
    }

    private int ControlPacked(int operation, int fd, uint events, ulong data)
    {
        var entry = new LibC.PackedEpollEvent { Events = events, Data = data };
        // Safe: passes a local event of the x86-64 layout.
        return LibC.epoll_ctl(_epoll.Number, operation, fd, &entry);
    }

    private int ControlAligned(int operation, int fd, uint events, ulong data)
    {
        var entry = new LibC.EpollEvent { Events = events, Data = data };
        // Safe: passes a local event of the generic layout.
        return LibC.epoll_ctl(_epoll.Number, operation, fd, &entry);
    }

    public void Dispose()
    {
        lock (_wakeGate)
        {
            _disposed = true;
        }

        _events.Dispose();
        _wake.Dispose();
        _epoll.Dispose();
    }
}

/// <summary>One descriptor's membership in an <see cref="EventLoop"/>; disposing it stops the watching.</summary>
internal sealed class EventRegistration : IDisposable
{
    private readonly EventLoop _loop;
    private bool _removed;

    internal EventRegistration(EventLoop loop, int fd, int index, uint generation, uint events)
    {
        _loop = loop;
        Fd = fd;
        Index = index;
        Token = (ulong)generation << 32 | (uint)index;
        Events = events;
    }

    public int Fd { get; }

    public uint Events { get; private set; }

    internal int Index { get; }

    internal ulong Token { get; }

    /// <summary>Changes the watched events; costs a system call only when they differ.</summary>
    public void Update(uint events)
    {
        if (_removed || events == Events)
        {
            return;
        }

        _loop.Modify(this, events);
        Events = events;
    }

    /// <summary>Stops watching; call before closing the descriptor.</summary>
    public void Dispose()
    {
        if (!_removed)
        {
            _removed = true;
            _loop.Remove(this);
        }
    }
}
