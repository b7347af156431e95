using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Slirp;

/// <summary>
/// libslirp as the NAT network's TCP/IP stack: NAT to the host's sockets, the gateway's ARP, DNS forwarding and host
/// forwards, on <see cref="NatSubnet"/>'s addresses, with its own DHCP server off. Frames from the guest come in
/// through <see cref="Deliver"/>, checked first (<see cref="GuestFrames"/>), so libslirp never parses a malformed one;
/// frames for the guest leave through the sink given at creation. libslirp is not thread-safe: every call, and so
/// every callback, happens on the thread that owns the stack, which also polls the sockets libslirp hands over each
/// turn (<see cref="AddTo"/>, <see cref="Serve"/>) and fires its timers (<see cref="FireDueTimers"/>).
/// </summary>
internal sealed unsafe class SlirpStack : IFrameSink, IDisposable
{
    /// <summary>
    /// libslirp's ARP answers give a virtual host (gateway, DNS) the MAC 52:55 followed by its IPv4 address; the
    /// DHCP server speaks as the gateway with the same one.
    /// </summary>
    public static readonly MacAddress GatewayMac = MacAddress.FromBytes([0x52, 0x55, .. NatSubnet.Gateway.GetAddressBytes()]);

    private readonly IFrameSink _toGuest;
    private readonly Dictionary<nint, SlirpTimer> _timers = [];
    private readonly long _epoch = Stopwatch.GetTimestamp();
    private GCHandle _self;
    private SlirpCallbacks* _callbacks;
    private nint _slirp;
    private nint _nextTimer = 1;
    private PollSet? _filling;
    private Exception? _callbackFailure;

    private SlirpStack(IFrameSink toGuest)
    {
        _toGuest = toGuest;
    }

    /// <summary>
    /// Checks, before anything is created, that libslirp can be loaded and is recent enough for the configuration
    /// this stack uses (SlirpConfig version 4, libslirp 4.7).
    /// </summary>
    public static void CheckLibrary()
    {
        if (!LibSlirp.TryLoad(out _))
        {
            throw NetworkException.Host($"the NAT network needs libslirp, which is not installed ({LibSlirp.InstallHint})");
        }
        // A static string of the library's.
        var version = Marshal.PtrToStringUTF8((nint)LibSlirp.VersionString()) ?? "";
        if (!System.Version.TryParse(version, out var parsed) || parsed < new System.Version(4, 7))
        {
            throw NetworkException.Host($"the NAT network needs libslirp 4.7 or newer; this host has {version}");
        }
    }

    /// <summary>A stack for the guest at <paramref name="guestAddress"/>, sending its frames to <paramref name="toGuest"/>.</summary>
    public static SlirpStack Create(IPAddress guestAddress, int mtu, IFrameSink toGuest)
    {
        KeepSocketBuffersInMappingsOfTheirOwn();
        var stack = new SlirpStack(toGuest);
        try
        {
            stack._self = GCHandle.Alloc(stack);
            // libslirp keeps the callbacks' address: they live in native memory until after slirp_cleanup.
            stack._callbacks = (SlirpCallbacks*)NativeMemory.AllocZeroed((nuint)sizeof(SlirpCallbacks));
            *stack._callbacks = Callbacks();
            var config = new SlirpConfig
            {
                Version = LibSlirp.ConfigVersion,
                InEnabled = 1,
                VNetwork = InAddr(NatSubnet.Network),
                VNetmask = InAddr(NatSubnet.Netmask),
                VHost = InAddr(NatSubnet.Gateway),
                VDhcpStart = InAddr(guestAddress),
                VNameServer = InAddr(NatSubnet.Dns),
                IfMtu = (nuint)mtu,
                IfMru = (nuint)mtu,
                DisableDhcp = 1,
            };
            // slirp_new copies what it keeps of the configuration, so it may live on this stack frame.
            stack._slirp = LibSlirp.New(&config, stack._callbacks, GCHandle.ToIntPtr(stack._self));
            return stack._slirp != 0 ? stack : throw NetworkException.Host("libslirp refused the NAT network's configuration");
        }
        catch
        {
            stack.Dispose();
            throw;
        }
    }

    /// <summary>
    /// libslirp gives every TCP connection two socket buffers of at least 128 KiB. glibc's malloc serves the first
    /// such block from a mapping of its own, but once one is freed it raises that threshold above their size, and
    /// later buffers are carved from an arena whose pages stay resident after their connections close: under steady
    /// traffic lkrun's resident size crept up by some 10 MiB over half an hour before it levelled off. Pinned at
    /// glibc's starting 128 KiB, the threshold sends the buffers to mappings of their own (all but those that fit in
    /// the little an arena keeps free at its top), which go back to the system when their connections end. (A glibc
    /// setting, process-wide; setting it again for another stack changes nothing.)
    /// </summary>
    private static void KeepSocketBuffersInMappingsOfTheirOwn()
    {
        if (OperatingSystem.IsLinux())
        {
            LibC.mallopt(LibC.M_MMAP_THRESHOLD, 128 * 1024);
        }
    }

    /// <summary>
    /// Forwards <paramref name="hostAddress"/>:<paramref name="hostPort"/> to the guest's port; false with the errno
    /// when libslirp cannot listen there. The host address must be IPv4 (libslirp forwards from an in_addr), which
    /// the network's checks made sure of.
    /// </summary>
    public bool TryAddHostForward(PortProtocol protocol, IPAddress hostAddress, int hostPort, IPAddress guestAddress, int guestPort, out int errno)
    {
        var udp = protocol == PortProtocol.Udp ? 1 : 0;
        if (LibSlirp.AddHostForward(_slirp, udp, InAddr(hostAddress), hostPort, InAddr(guestAddress), guestPort) < 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return false;
        }
        errno = 0;
        return true;
    }

    /// <summary>Stops forwarding <paramref name="hostAddress"/>:<paramref name="hostPort"/>, closing its listener; false when there was no such forward.</summary>
    public bool RemoveHostForward(PortProtocol protocol, IPAddress hostAddress, int hostPort) =>
        LibSlirp.RemoveHostForward(_slirp, protocol == PortProtocol.Udp ? 1 : 0, InAddr(hostAddress), hostPort) == 0;

    /// <summary>A frame from the guest: a well-formed one goes to libslirp, anything else is dropped.</summary>
    public void Deliver(ReadOnlySpan<byte> frame)
    {
        if (!GuestFrames.IsWellFormed(frame))
        {
            return;
        }
        // libslirp copies the frame into a buffer of its own before slirp_input returns.
        fixed (byte* bytes = frame)
        {
            LibSlirp.Input(_slirp, bytes, frame.Length);
        }
        ThrowIfCallbackFailed();
    }

    /// <summary>Adds libslirp's sockets to this turn's set; returns how long the wait may last (-1: no limit).</summary>
    public int AddTo(PollSet poll)
    {
        var timeout = uint.MaxValue;
        _filling = poll;
        // timeout is a local that slirp_pollfds_fill only writes during the call.
        LibSlirp.PollFdsFill(_slirp, &timeout, &AddPoll, GCHandle.ToIntPtr(_self));
        ThrowIfCallbackFailed();
        long milliseconds = timeout == uint.MaxValue ? -1 : timeout;
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

    /// <summary>Lets libslirp serve its sockets after the wait; <paramref name="waitFailed"/> when it was interrupted.</summary>
    public void Serve(bool waitFailed)
    {
        LibSlirp.PollFdsPoll(_slirp, waitFailed ? 1 : 0, &GetREvents, GCHandle.ToIntPtr(_self));
        ThrowIfCallbackFailed();
    }

    public void FireDueTimers()
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

    /// <summary>Releases libslirp and its sockets; on the thread that used the stack.</summary>
    public void Dispose()
    {
        if (_slirp != 0)
        {
            LibSlirp.Cleanup(_slirp);
            _slirp = 0;
        }
        if (_callbacks is not null)
        {
            NativeMemory.Free(_callbacks);
            _callbacks = null;
        }
        if (_self.IsAllocated)
        {
            _self.Free();
        }
    }

    /// <summary>An IPv4 address as struct in_addr: its four bytes in network order, read as a native number.</summary>
    private static uint InAddr(IPAddress address) =>
        address.AddressFamily == AddressFamily.InterNetwork
            ? MemoryMarshal.Read<uint>(address.GetAddressBytes())
            : throw new ArgumentException($"{address}: libslirp takes IPv4 addresses only", nameof(address));

    private long NowMilliseconds => (long)Stopwatch.GetElapsedTime(_epoch).TotalMilliseconds;

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

        /// <summary>In milliseconds of this stack's clock; null while not armed.</summary>
        public long? ExpiresAt { get; set; }
    }

    // libslirp's callbacks. They run on the stack's thread, inside the libslirp call that makes them; the opaque
    // pointer is a GCHandle of this object. An exception must not unwind through libslirp, so each callback
    // records it, and the stack rethrows it once libslirp has returned.

    private static SlirpCallbacks Callbacks() => new()
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

    private static SlirpStack Of(nint opaque) => (SlirpStack)GCHandle.FromIntPtr(opaque).Target!;

    private void Record(Exception e) => _callbackFailure ??= e;

    [UnmanagedCallersOnly]
    private static nint SendPacket(byte* buffer, nuint length, nint opaque)
    {
        var stack = Of(opaque);
        try
        {
            // The frame is libslirp's for the duration of the call, and the sink copies what it keeps; libslirp
            // never hands over more than its MTU plus the Ethernet header, and the links drop anything longer.
            stack._toGuest.Deliver(new ReadOnlySpan<byte>(buffer, (int)Math.Min(length, int.MaxValue)));
        }
        catch (Exception e)
        {
            stack.Record(e);
        }
        return (nint)length;
    }

    /// <summary>libslirp reports what the guest did wrong; that is the guest's business, not the host's.</summary>
    [UnmanagedCallersOnly]
    private static void GuestError(byte* message, nint opaque)
    {
    }

    [UnmanagedCallersOnly]
    private static long ClockGetNs(nint opaque) => Stopwatch.GetElapsedTime(Of(opaque)._epoch).Ticks * 100;

    [UnmanagedCallersOnly]
    private static nint TimerNewOpaque(int timerId, nint callbackOpaque, nint opaque)
    {
        var stack = Of(opaque);
        var handle = stack._nextTimer++;
        stack._timers[handle] = new SlirpTimer(timerId, callbackOpaque);
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
        var stack = Of(opaque);
        short events = 0;
        events |= (slirpEvents & LibSlirp.PollIn) != 0 ? LibC.POLLIN : (short)0;
        events |= (slirpEvents & LibSlirp.PollOut) != 0 ? LibC.POLLOUT : (short)0;
        events |= (slirpEvents & LibSlirp.PollPri) != 0 ? LibC.POLLPRI : (short)0;
        try
        {
            return stack._filling!.Add(fd, events);
        }
        catch (Exception e)
        {
            stack.Record(e);
            return -1;
        }
    }

    [UnmanagedCallersOnly]
    private static int GetREvents(int index, nint opaque)
    {
        var revents = Of(opaque)._filling?.ReturnedEvents(index) ?? 0;
        var events = 0;
        events |= (revents & LibC.POLLIN) != 0 ? LibSlirp.PollIn : 0;
        events |= (revents & LibC.POLLOUT) != 0 ? LibSlirp.PollOut : 0;
        events |= (revents & LibC.POLLPRI) != 0 ? LibSlirp.PollPri : 0;
        events |= (revents & (LibC.POLLERR | LibC.POLLNVAL)) != 0 ? LibSlirp.PollErr : 0;
        events |= (revents & LibC.POLLHUP) != 0 ? LibSlirp.PollHup : 0;
        return events;
    }
}
