using Lkrun.Services.Interop;

namespace Lkrun.Services.VhostUser;

/// <summary>
/// What the front-end told the back-end about one ring: size, addresses, base index and its three eventfds. The
/// ring is started (has a <see cref="Queue"/>) from the kick descriptor until GET_VRING_BASE, and ready when it is
/// also enabled.
/// </summary>
internal sealed class Vring(int index, EventLoop loop, Action<Vring> kicked) : IEventHandler, IQueueNotifier, IDisposable
{
    private FileDescriptor? _kick;
    private EventRegistration? _kickRegistration;
    private FileDescriptor? _call;
    private FileDescriptor? _error;

    public int Index { get; } = index;

    public ushort Size { get; set; }

    public VringAddress? Address { get; set; }

    /// <summary>The base index from SET_VRING_BASE, used when the ring starts.</summary>
    public ushort Base { get; set; }

    public bool Enabled { get; set; }

    public SplitVirtqueue? Queue { get; private set; }

    public bool IsStarted => Queue is not null;

    /// <summary>Started and enabled: the backend has been handed the queue (a broken one too, which pops nothing).</summary>
    public bool IsReady => Queue is not null && Enabled;

    public SplitRingLayout Layout => Address is { } address
        ? new SplitRingLayout(Size, address.DescriptorTable, address.AvailableRing, address.UsedRing)
        : throw new VhostUserProtocolException($"ring {Index} has no addresses");

    public void Start(SplitVirtqueue queue)
    {
        queue.Notifier = this;
        Queue = queue;
    }

    /// <summary>Stops the ring: the next base is where the device got to, and kicks are no longer watched.</summary>
    public void Stop()
    {
        if (Queue is { } queue)
        {
            Base = queue.NextAvailable;
            Queue = null;
        }

        ReplaceKick(null);
    }

    public void ReplaceKick(FileDescriptor? kick)
    {
        _kickRegistration?.Dispose();
        _kickRegistration = null;
        _kick?.Dispose();
        _kick = kick;
        if (kick is not null)
        {
            UnixSocket.SetNonBlocking(kick.Number, nonBlocking: true);
            _kickRegistration = loop.Register(kick.Number, EventLoop.Readable, this);
        }
    }

    public void ReplaceCall(FileDescriptor? call)
    {
        _call?.Dispose();
        _call = call;
    }

    public void ReplaceError(FileDescriptor? error)
    {
        _error?.Dispose();
        _error = error;
    }

    public void Notify()
    {
        if (_call is { } call)
        {
            EventFd.Signal(call.Number);
        }
    }

    public void OnEvents(uint events)
    {
        if (_kick is { } kick && EventFd.Drain(kick.Number))
        {
            kicked(this);
        }
    }

    public void Dispose()
    {
        Queue = null;
        ReplaceKick(null);
        ReplaceCall(null);
        ReplaceError(null);
    }
}
