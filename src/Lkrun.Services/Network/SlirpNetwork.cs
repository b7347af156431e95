using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Lkrun.Services.Interop;
using Lkrun.Spec;

namespace Lkrun.Services.Network;

/// <summary>
/// The VM's NAT network, hosted in lkrun: libslirp is the TCP/IP stack (NAT to the host's sockets, the gateway's
/// ARP, DNS forwarding, published ports), and <see cref="DhcpServer"/> answers DHCP in its place. QEMU connects its
/// network device to <see cref="GuestNetwork.FrameSocket"/> (<c>-netdev stream</c>) and exchanges Ethernet frames
/// there. libslirp is not thread-safe, so one dedicated thread does everything: it sleeps in poll(2) on the QEMU
/// connection, libslirp's sockets and a wake-up eventfd (poll rather than epoll, since libslirp hands over its
/// sockets afresh on every turn), and in turn feeds frames from the guest to libslirp,
/// lets libslirp serve its sockets, and fires libslirp's timers. libslirp's callbacks run on that thread too,
/// inside those calls. Frames from the guest are checked before libslirp sees them: malformed ones are dropped.
/// </summary>
public sealed class SlirpNetwork : IAsyncDisposable
{
    public const string SocketName = "net.sock";

    /// <summary>
    /// libslirp's ARP answers give a virtual host (gateway, DNS) the MAC 52:55 followed by its IPv4 address; the
    /// DHCP server speaks as the gateway with the same one.
    /// </summary>
    public static readonly MacAddress GatewayMac = MacAddress.FromBytes([0x52, 0x55, .. NatNetwork.Gateway.GetAddressBytes()]);

    /// <summary>How many reads from QEMU one turn of the loop takes at most, so libslirp's sockets get their turn.</summary>
    private const int ReadsPerTurn = 16;

    /// <summary>Queued frames for QEMU are written out once this many bytes wait, rather than at the end of the turn.</summary>
    private const int FlushThreshold = 256 * 1024;

    private readonly GuestNetwork _network;
    private readonly Action<string> _onFailure;
    private readonly Socket _listener;
    private readonly FileDescriptor _wakeEvent;
    private readonly DhcpServer _dhcp;
    private readonly FrameStreamReader _reader = new();
    private readonly FrameStreamWriter _writer = new();
    private readonly Dictionary<nint, SlirpTimer> _timers = [];
    private readonly long _epoch = Stopwatch.GetTimestamp();
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentQueue<HostForwardChange> _forwardChanges = new();
    private LibC.PollFd[] _pollFds = new LibC.PollFd[32];
    private int _pollCount;
    private Socket? _connection;
    private nint _slirp;
    private nint _nextTimer = 1;
    private volatile bool _stopping;
    private int _disposed;
    private Exception? _callbackFailure;

    private SlirpNetwork(GuestNetwork network, Action<string> onFailure, Socket listener, FileDescriptor wakeEvent)
    {
        _network = network;
        _onFailure = onFailure;
        _listener = listener;
        _wakeEvent = wakeEvent;
        _dhcp = new DhcpServer(DhcpSettings.ForNatNetwork(network.Mac, network.Address, NatNetwork.Mtu));
    }

    /// <summary>Completes once the network has stopped and its socket is gone.</summary>
    public Task Stopped => _stopped.Task;

    /// <summary>
    /// Checks, before anything is created, that libslirp can be loaded and is recent enough for the
    /// configuration this network uses (SlirpConfig version 4, libslirp 4.7).
    /// </summary>
    public static void CheckHost()
    {
        if (!NativeLibrary.TryLoad(LibSlirp.LibraryName, typeof(SlirpNetwork).Assembly, null, out _))
        {
            throw NetworkException.Host(
                $"the NAT network needs libslirp ({LibSlirp.LibraryName}), which is not installed (Debian/Ubuntu: apt-get install libslirp0)");
        }
        string version;
        unsafe
        {
            // A static string of the library's.
            version = Marshal.PtrToStringUTF8((nint)LibSlirp.VersionString()) ?? "";
        }
        if (!System.Version.TryParse(version, out var parsed) || parsed < new System.Version(4, 7))
        {
            throw NetworkException.Host($"the NAT network needs libslirp 4.7 or newer; this host has {version}");
        }
    }

    /// <summary>
    /// Listens on <see cref="GuestNetwork.FrameSocket"/>, sets up the stack and the published ports, and starts
    /// the network thread. A published port that cannot be bound is a <see cref="NetworkException"/>.
    /// <paramref name="onFailure"/> receives one line should the network stop by itself while the VM runs.
    /// </summary>
    public static SlirpNetwork Start(GuestNetwork network, Action<string> onFailure)
    {
        File.Delete(network.FrameSocket);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        FileDescriptor wakeEvent;
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(network.FrameSocket));
            listener.Listen(1);
            listener.Blocking = false;
            wakeEvent = EventFd.Create();
        }
        catch
        {
            listener.Dispose();
            File.Delete(network.FrameSocket);
            throw;
        }
        var slirpNetwork = new SlirpNetwork(network, onFailure, listener, wakeEvent);
        new Thread(slirpNetwork.Run) { IsBackground = true, Name = "nat network" }.Start();
        try
        {
            slirpNetwork._started.Task.GetAwaiter().GetResult();
        }
        catch
        {
            slirpNetwork._stopped.Task.GetAwaiter().GetResult();
            wakeEvent.Dispose();
            throw;
        }
        return slirpNetwork;
    }

    /// <summary>
    /// Publishes <paramref name="port"/> (or, with <paramref name="add"/> false, stops publishing it) while the
    /// network runs. Only the network thread may call libslirp, so the change is queued for it and done between
    /// two turns of its loop; a port that cannot be bound fails with a <see cref="NetworkException"/>.
    /// </summary>
    public Task ChangeHostForwardAsync(PublishedPort port, bool add)
    {
        var change = new HostForwardChange(port, add);
        _forwardChanges.Enqueue(change);
        if (_stopped.Task.IsCompleted)
        {
            ApplyForwardChanges();
        }
        else
        {
            EventFd.Signal(_wakeEvent.Number);
        }
        return change.Done.Task;
    }

    /// <summary>Stops the network thread, which releases libslirp and its sockets, and deletes the socket.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stopping = true;
        EventFd.Signal(_wakeEvent.Number);
        await _stopped.Task;
        // Closed only now: the thread polls the eventfd until it has stopped.
        _wakeEvent.Dispose();
    }

    private unsafe void Run()
    {
        var self = GCHandle.Alloc(this);
        // libslirp keeps the callbacks' address: they live in native memory until after slirp_cleanup.
        var callbacks = (SlirpCallbacks*)NativeMemory.AllocZeroed((nuint)sizeof(SlirpCallbacks));
        try
        {
            try
            {
                *callbacks = Callbacks();
                _slirp = CreateStack(callbacks, GCHandle.ToIntPtr(self));
                Publish();
            }
            catch (Exception e)
            {
                _started.SetException(e);
                return;
            }
            _started.SetResult();
            try
            {
                Loop(GCHandle.ToIntPtr(self));
            }
            catch (Exception e)
            {
                // The thread's end: whatever went wrong is reported, never left to take lkrun down.
                _onFailure($"the NAT network stopped: {e.Message}");
            }
        }
        finally
        {
            if (_slirp != 0)
            {
                LibSlirp.Cleanup(_slirp);
            }
            NativeMemory.Free(callbacks);
            self.Free();
            _connection?.Dispose();
            _listener.Dispose();
            File.Delete(_network.FrameSocket);
            _slirp = 0;
            _stopped.SetResult();
            ApplyForwardChanges();
        }
    }

    private unsafe nint CreateStack(SlirpCallbacks* callbacks, nint opaque)
    {
        var config = new SlirpConfig
        {
            Version = LibSlirp.ConfigVersion,
            InEnabled = 1,
            VNetwork = InAddr(NatNetwork.Network),
            VNetmask = InAddr(NatNetwork.Netmask),
            VHost = InAddr(NatNetwork.Gateway),
            VDhcpStart = InAddr(_network.Address),
            VNameServer = InAddr(NatNetwork.Dns),
            IfMtu = NatNetwork.Mtu,
            IfMru = NatNetwork.Mtu,
            DisableDhcp = 1,
        };
        // slirp_new copies what it keeps of the configuration, so it may live on this stack frame.
        var slirp = LibSlirp.New(&config, callbacks, opaque);
        return slirp != 0 ? slirp : throw NetworkException.Host("libslirp refused the NAT network's configuration");
    }

    private void Publish()
    {
        foreach (var port in _network.PublishedPorts)
        {
            AddHostForward(port);
        }
    }

    private void AddHostForward(PublishedPort port)
    {
        var udp = port.Protocol == PortProtocol.Udp ? 1 : 0;
        if (LibSlirp.AddHostForward(_slirp, udp, InAddr(port.HostAddress), port.HostPort, InAddr(_network.Address), port.GuestPort) < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            // Another program took the port since the preflight: say why in the preflight's words when it can.
            var why = PortPreflight.WhyNotBindable(port) ?? $"cannot listen on it ({Marshal.GetPInvokeErrorMessage(errno)})";
            throw NetworkException.Usage($"-publish {port}: {why}");
        }
    }

    /// <summary>Carries out the queued <see cref="ChangeHostForwardAsync"/> calls; on the network thread, or once it has stopped.</summary>
    private void ApplyForwardChanges()
    {
        while (_forwardChanges.TryDequeue(out var change))
        {
            try
            {
                if (_slirp == 0)
                {
                    throw NetworkException.Host("the NAT network has stopped");
                }
                if (change.Add)
                {
                    AddHostForward(change.Port);
                }
                else if (LibSlirp.RemoveHostForward(_slirp, change.Port.Protocol == PortProtocol.Udp ? 1 : 0, InAddr(change.Port.HostAddress), change.Port.HostPort) < 0)
                {
                    throw NetworkException.Usage($"{change.Port} is not published");
                }
                change.Done.SetResult();
            }
            catch (Exception e)
            {
                change.Done.SetException(e);
            }
        }
    }

    private sealed record HostForwardChange(PublishedPort Port, bool Add)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>An IPv4 address as struct in_addr: its four bytes in network order, read as a native number.</summary>
    private static uint InAddr(IPAddress address) =>
        address.AddressFamily == AddressFamily.InterNetwork
            ? MemoryMarshal.Read<uint>(address.GetAddressBytes())
            : throw NetworkException.Usage($"{address}: the NAT network publishes on IPv4 host addresses only");

    private unsafe void Loop(nint opaque)
    {
        while (!_stopping)
        {
            ApplyForwardChanges();
            _pollCount = 0;
            AddPollFd(_wakeEvent.Number, LibC.POLLIN);
            var guest = _connection ?? _listener;
            AddPollFd((int)guest.Handle, (short)(LibC.POLLIN | (_connection is not null && !_writer.IsEmpty ? LibC.POLLOUT : 0)));
            var timeout = uint.MaxValue;
            // timeout is a local that slirp_pollfds_fill only writes during the call.
            LibSlirp.PollFdsFill(_slirp, &timeout, &AddPoll, opaque);
            var ready = Wait(PollTimeout(timeout));
            LibSlirp.PollFdsPoll(_slirp, ready < 0 ? 1 : 0, &GetREvents, opaque);
            ThrowIfCallbackFailed();
            if (ready > 0)
            {
                if (_pollFds[0].REvents != 0)
                {
                    EventFd.Drain(_wakeEvent.Number);
                }
                if (_pollFds[1].REvents != 0)
                {
                    ServeGuest(_pollFds[1].REvents);
                }
            }
            FireDueTimers();
            Flush();
        }
    }

    /// <summary>poll(2) on the set built this turn; -1 for a wait a signal interrupted, which counts as no events.</summary>
    private unsafe int Wait(int timeoutMilliseconds)
    {
        // Safe: the array is pinned for the call and holds _pollCount entries.
        fixed (LibC.PollFd* fds = _pollFds)
        {
            var ready = LibC.poll(fds, (nuint)_pollCount, timeoutMilliseconds);
            return ready >= 0 || LibC.LastError == LibC.EINTR ? ready : throw LibC.Failure("poll");
        }
    }

    private int PollTimeout(uint slirpTimeout)
    {
        long milliseconds = slirpTimeout == uint.MaxValue ? -1 : slirpTimeout;
        var now = NowMilliseconds;
        foreach (var timer in _timers.Values)
        {
            if (timer.ExpiresAt is { } expires)
            {
                var wait = Math.Max(0, expires - now);
                milliseconds = milliseconds < 0 ? wait : Math.Min(milliseconds, wait);
            }
        }
        return (int)Math.Min(milliseconds, int.MaxValue);
    }

    private void ServeGuest(short events)
    {
        if (_connection is null)
        {
            Accept();
            return;
        }
        if ((events & LibC.POLLOUT) != 0)
        {
            Flush();
        }
        if ((events & (LibC.POLLIN | LibC.POLLHUP | LibC.POLLERR)) != 0)
        {
            ReadFromGuest();
        }
    }

    private void Accept()
    {
        try
        {
            var connection = _listener.Accept();
            connection.Blocking = false;
            _connection = connection;
            _reader.Reset();
            _writer.Clear();
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.ConnectionAborted)
        {
            // QEMU gave up on the connection before it was taken; it is the only one who connects.
        }
    }

    private void ReadFromGuest()
    {
        for (var i = 0; i < ReadsPerTurn && _connection is { } connection; i++)
        {
            var read = connection.Receive(_reader.FreeSpace(), SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success || read == 0)
            {
                // QEMU closed the connection (it quit, or reset its network device): wait for the next one.
                Disconnect();
                return;
            }
            _reader.Received(read);
            while (_reader.TryReadFrame(out var frame))
            {
                FromGuest(frame);
            }
            ThrowIfCallbackFailed();
        }
    }

    /// <summary>One frame from the guest: DHCP is answered here, anything else well-formed goes to libslirp.</summary>
    private unsafe void FromGuest(ReadOnlySpan<byte> frame)
    {
        if (_dhcp.IsAddressedToServer(frame))
        {
            if (_dhcp.Answer(frame) is { } reply)
            {
                ToGuest(reply);
            }
            return;
        }
        if (!GuestFrames.IsWellFormed(frame))
        {
            return;
        }
        // libslirp copies the frame into a buffer of its own before slirp_input returns.
        fixed (byte* bytes = frame)
        {
            LibSlirp.Input(_slirp, bytes, frame.Length);
        }
    }

    private void ToGuest(ReadOnlySpan<byte> frame)
    {
        if (_connection is null)
        {
            return;
        }
        if (_writer.Pending.Length >= FlushThreshold)
        {
            Flush();
        }
        _writer.TryQueue(frame);
    }

    private void Flush()
    {
        while (_connection is { } connection && !_writer.IsEmpty)
        {
            var sent = connection.Send(_writer.Pending, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success)
            {
                Disconnect();
                return;
            }
            _writer.Consumed(sent);
        }
    }

    private void Disconnect()
    {
        _connection?.Dispose();
        _connection = null;
        _reader.Reset();
        _writer.Clear();
    }

    private void AddPollFd(int fd, short events)
    {
        if (_pollCount == _pollFds.Length)
        {
            Array.Resize(ref _pollFds, _pollFds.Length * 2);
        }
        _pollFds[_pollCount++] = new LibC.PollFd { Fd = fd, Events = events };
    }

    private long NowMilliseconds => (long)Stopwatch.GetElapsedTime(_epoch).TotalMilliseconds;

    private void FireDueTimers()
    {
        if (_timers.Count == 0)
        {
            return;
        }
        var now = NowMilliseconds;
        foreach (var (handle, timer) in _timers.ToArray())
        {
            if (timer.ExpiresAt <= now && _timers.ContainsKey(handle))
            {
                timer.ExpiresAt = null;
                LibSlirp.HandleTimer(_slirp, timer.Id, timer.CallbackOpaque);
            }
        }
        ThrowIfCallbackFailed();
    }

    private void ThrowIfCallbackFailed()
    {
        if (_callbackFailure is { } failure)
        {
            throw new InvalidOperationException(failure.Message, failure);
        }
    }

    private sealed class SlirpTimer(int id, nint callbackOpaque)
    {
        public int Id { get; } = id;

        public nint CallbackOpaque { get; } = callbackOpaque;

        /// <summary>In milliseconds of this network's clock; null while not armed.</summary>
        public long? ExpiresAt { get; set; }
    }

    // libslirp's callbacks. They run on the network thread, inside the libslirp call that makes them; the opaque
    // pointer is a GCHandle of this object. An exception must not unwind through libslirp, so each callback
    // records it, and the loop rethrows it once libslirp has returned.

    private static unsafe SlirpCallbacks Callbacks() => new()
    {
        SendPacket = &SendPacket,
        GuestError = &GuestError,
        ClockGetNs = &ClockGetNs,
        TimerFree = &TimerFree,
        TimerMod = &TimerMod,
        RegisterPollFd = &RegisterPollFd,
        UnregisterPollFd = &UnregisterPollFd,
        Notify = &Notify,
        TimerNewOpaque = &TimerNewOpaque,
    };

    private static SlirpNetwork Of(nint opaque) => (SlirpNetwork)GCHandle.FromIntPtr(opaque).Target!;

    private void Record(Exception e) => _callbackFailure ??= e;

    [UnmanagedCallersOnly]
    private static unsafe nint SendPacket(byte* buffer, nuint length, nint opaque)
    {
        var network = Of(opaque);
        try
        {
            // The frame is libslirp's for the duration of the call, and the writer copies it; libslirp never hands
            // over more than its MTU plus the Ethernet header, and the writer drops anything longer anyway.
            network.ToGuest(new ReadOnlySpan<byte>(buffer, (int)Math.Min(length, int.MaxValue)));
        }
        catch (Exception e)
        {
            network.Record(e);
        }
        return (nint)length;
    }

    /// <summary>libslirp reports what the guest did wrong; that is the guest's business, not the host's.</summary>
    [UnmanagedCallersOnly]
    private static unsafe void GuestError(byte* message, nint opaque)
    {
    }

    [UnmanagedCallersOnly]
    private static long ClockGetNs(nint opaque) => Stopwatch.GetElapsedTime(Of(opaque)._epoch).Ticks * 100;

    [UnmanagedCallersOnly]
    private static nint TimerNewOpaque(int timerId, nint callbackOpaque, nint opaque)
    {
        var network = Of(opaque);
        var handle = network._nextTimer++;
        network._timers[handle] = new SlirpTimer(timerId, callbackOpaque);
        return handle;
    }

    [UnmanagedCallersOnly]
    private static void TimerFree(nint timer, nint opaque) => Of(opaque)._timers.Remove(timer);

    [UnmanagedCallersOnly]
    private static void TimerMod(nint timer, long expireMilliseconds, nint opaque)
    {
        if (Of(opaque)._timers.TryGetValue(timer, out var armed))
        {
            armed.ExpiresAt = expireMilliseconds;
        }
    }

    /// <summary>The poll set is rebuilt from slirp_pollfds_fill on every turn, so a socket needs no registering.</summary>
    [UnmanagedCallersOnly]
    private static void RegisterPollFd(int fd, nint opaque)
    {
    }

    [UnmanagedCallersOnly]
    private static void UnregisterPollFd(int fd, nint opaque)
    {
    }

    /// <summary>libslirp asks its I/O thread to poll again; that is the thread making this call, which always does.</summary>
    [UnmanagedCallersOnly]
    private static void Notify(nint opaque)
    {
    }

    [UnmanagedCallersOnly]
    private static int AddPoll(int fd, int slirpEvents, nint opaque)
    {
        var network = Of(opaque);
        short events = 0;
        events |= (slirpEvents & LibSlirp.PollIn) != 0 ? LibC.POLLIN : (short)0;
        events |= (slirpEvents & LibSlirp.PollOut) != 0 ? LibC.POLLOUT : (short)0;
        events |= (slirpEvents & LibSlirp.PollPri) != 0 ? LibC.POLLPRI : (short)0;
        try
        {
            network.AddPollFd(fd, events);
        }
        catch (Exception e)
        {
            network.Record(e);
            return -1;
        }
        return network._pollCount - 1;
    }

    [UnmanagedCallersOnly]
    private static int GetREvents(int index, nint opaque)
    {
        var network = Of(opaque);
        if (index < 0 || index >= network._pollCount)
        {
            return 0;
        }
        var revents = network._pollFds[index].REvents;
        var events = 0;
        events |= (revents & LibC.POLLIN) != 0 ? LibSlirp.PollIn : 0;
        events |= (revents & LibC.POLLOUT) != 0 ? LibSlirp.PollOut : 0;
        events |= (revents & LibC.POLLPRI) != 0 ? LibSlirp.PollPri : 0;
        events |= (revents & (LibC.POLLERR | LibC.POLLNVAL)) != 0 ? LibSlirp.PollErr : 0;
        events |= (revents & LibC.POLLHUP) != 0 ? LibSlirp.PollHup : 0;
        return events;
    }
}
