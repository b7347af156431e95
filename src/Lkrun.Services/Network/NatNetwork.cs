using System.Collections.Concurrent;
using System.Net.Sockets;
using Lkrun.Services.Faults;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Publishing;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;

namespace Lkrun.Services.Network;

/// <summary>
/// The VM's NAT network, hosted in lkrun. It composes its parts on one thread of its own: the link to the VM's
/// network device (<see cref="FrameLinkEndpoint"/>: a stream or datagram socket), the check that drops malformed
/// frames and reports the first (<see cref="GuestFrameCheck"/>), DHCP interception
/// (<see cref="DhcpInterceptor"/>: lkrun's <see cref="DhcpServer"/> answers DHCP in libslirp's place), the block on
/// link-local addresses (<see cref="LinkLocalGuard"/>), the TCP/IP
/// stack (<see cref="SlirpStack"/>: libslirp) and the published ports (<see cref="PortPublisher"/>). Frames from the
/// guest go link → check → DHCP interception → link-local block → stack; frames from the stack and DHCP's answers go to the link.
/// libslirp is not thread-safe, so that one thread does everything: it sleeps in poll(2) on the link, libslirp's
/// sockets and a wake-up pipe, and in turn takes in the guest's frames, lets libslirp serve its sockets, fires
/// libslirp's timers and writes out what waits for the guest. Nothing on that thread is Linux-only.
/// </summary>
public sealed class NatNetwork : INetworkService
{
    /// <summary>The network's name for <see cref="FaultInjection"/>: <c>LKRUN_FAULT=network=N</c>.</summary>
    public const string ServiceName = "network";

    private readonly GuestNetwork _network;
    private readonly IFrameLink _link;
    private readonly GuestTroubleLog _trouble;
    private readonly long? _faultDeadline;
    private readonly Action<string>? _notice;
    private readonly WakePipe _wake = new();
    private readonly PollSet _poll = new();
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentQueue<HostForwardChange> _forwardChanges = new();
    private volatile bool _stopping;
    private int _disposed;

    private NatNetwork(GuestNetwork network, IFrameLink link, TimeSpan? failAfter, Action<string>? notice)
    {
        _network = network;
        _trouble = new GuestTroubleLog(notice);
        _notice = notice;
        _link = link;
        _faultDeadline = failAfter is { } delay ? Environment.TickCount64 + (long)delay.TotalMilliseconds : null;
    }

    /// <summary>
    /// Completes once the network has stopped after <see cref="DisposeAsync"/> and its socket files are gone; faults
    /// with a <see cref="NetworkException"/> whose message is one line (<c>the NAT network stopped: ...</c>) when the
    /// network's thread ended by itself while the VM runs. Its sockets are gone then too.
    /// </summary>
    public Task Completion => _completion.Task;

    /// <summary>
    /// Checks, before anything is created, what the network cannot do whatever engine runs the VM: libslirp must be
    /// there, and published ports need IPv4 host addresses (libslirp forwards from an in_addr). Nothing for a VM
    /// without this network.
    /// </summary>
    public static void Check(NetworkSpec spec)
    {
        if (spec.Mode != NetworkMode.Vmnet)
        {
            return;
        }
        foreach (var port in spec.PublishedPorts)
        {
            CheckPublishable(port);
        }
        SlirpStack.CheckLibrary();
    }

    /// <summary>Published ports need IPv4 host addresses: libslirp forwards from an in_addr.</summary>
    public static void CheckPublishable(PublishedPort port)
    {
        if (port.HostAddress.AddressFamily != AddressFamily.InterNetwork)
        {
            throw NetworkException.Usage($"-publish {port}: the NAT network publishes on IPv4 host addresses only");
        }
    }

    /// <summary>
    /// Opens lkrun's end of <paramref name="network"/>'s link, sets up the stack and the published ports, and starts
    /// the network's thread. A published port that cannot be bound is a <see cref="NetworkException"/>, and nothing
    /// is left behind. With <c>LKRUN_FAULT=network=N</c> the thread fails N seconds after it started.
    /// The first frame of each kind of guest trouble (<see cref="GuestTrouble"/>) is reported to <paramref name="notice"/>,
    /// and so is a shortage of descriptors for the guest's connections.
    /// </summary>
    public static NatNetwork Start(GuestNetwork network, Action<string>? notice = null) =>
        Start(network, FaultInjection.DelayFor(ServiceName), notice);

    /// <summary><see cref="Start(GuestNetwork, Action{string}?)"/>, failing on purpose <paramref name="failAfter"/> after the start when given.</summary>
    internal static NatNetwork Start(GuestNetwork network, TimeSpan? failAfter, Action<string>? notice = null)
    {
        var link = FrameLinks.Open(network.Link);
        var natNetwork = new NatNetwork(network, link, failAfter, notice);
        new Thread(natNetwork.Run) { IsBackground = true, Name = "nat network" }.Start();
        try
        {
            natNetwork._started.Task.GetAwaiter().GetResult();
        }
        catch
        {
            // The thread has given up and is releasing what it made; the socket files are gone once it is done.
            natNetwork._completion.Task.GetAwaiter().GetResult();
            natNetwork._wake.Dispose();
            throw;
        }
        return natNetwork;
    }

    /// <summary>
    /// Publishes <paramref name="port"/> (or, with <paramref name="add"/> false, stops publishing it) while the
    /// network runs. Only the network's thread may call libslirp, so the change is queued for it and done between
    /// two turns of its loop; a port that cannot be bound fails with a <see cref="NetworkException"/>.
    /// </summary>
    public Task ChangeHostForwardAsync(PublishedPort port, bool add)
    {
        var change = new HostForwardChange(port, add);
        _forwardChanges.Enqueue(change);
        try
        {
            _wake.Signal();
        }
        catch (ObjectDisposedException)
        {
            // The network has stopped: the change fails below.
        }
        if (_completion.Task.IsCompleted)
        {
            FailForwardChanges();
        }
        return change.Done.Task;
    }

    /// <summary>Stops the network's thread, which releases libslirp and its sockets and deletes the socket files.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stopping = true;
        _wake.Signal();
        try
        {
            await _completion.Task;
        }
        catch (NetworkException)
        {
            // The failure was the owner's to observe through Completion; stopping is done either way.
        }
        // Closed only now: the thread polls the pipe until it has stopped.
        _wake.Dispose();
    }

    private void Run()
    {
        SlirpStack? stack = null;
        Exception? failure = null;
        try
        {
            IFrameSink fromGuest;
            try
            {
                stack = SlirpStack.Create(_network.Address, _network.Mtu, _link);
                var dhcp = new DhcpServer(DhcpSettings.ForNatNetwork(_network.Mtu), new SingleDhcpClient(_network.Mac, _network.Address), _trouble);
                var connections = new DescriptorShortageProbe(stack, DescriptorShortage.OfProcess.CanOpenOne, () => DescriptorShortage.OfProcess.Report(_notice));
                fromGuest = new GuestFrameCheck(_trouble,
                    next: new DhcpInterceptor(dhcp, replies: _link, next: new LinkLocalGuard(replies: _link, next: connections)));
                PortPublisher.Publish(stack, _network.PublishedPorts, _network.Address);
            }
            catch (Exception e)
            {
                _started.SetException(e);
                return;
            }
            _started.SetResult();
            try
            {
                Loop(stack, fromGuest);
            }
            catch (Exception e)
            {
                // The thread's end: whatever went wrong is reported, never left to take lkrun down.
                failure = NetworkException.Host($"the NAT network stopped: {e.Message}");
            }
        }
        finally
        {
            stack?.Dispose();
            _link.Dispose();
            if (failure is null)
            {
                _completion.SetResult();
            }
            else
            {
                _completion.SetException(failure);
            }
            FailForwardChanges();
        }
    }

    /// <summary>Carries out the queued <see cref="ChangeHostForwardAsync"/> calls, on the network's thread.</summary>
    private void ApplyForwardChanges(SlirpStack stack)
    {
        while (_forwardChanges.TryDequeue(out var change))
        {
            try
            {
                if (change.Add)
                {
                    PortPublisher.Publish(stack, [change.Port], _network.Address);
                }
                else
                {
                    PortPublisher.Unpublish(stack, change.Port);
                }
                change.Done.SetResult();
            }
            catch (NetworkException e)
            {
                change.Done.SetException(e);
            }
        }
    }

    /// <summary>Once the thread has stopped, changes queued or still coming can only fail.</summary>
    private void FailForwardChanges()
    {
        while (_forwardChanges.TryDequeue(out var change))
        {
            change.Done.TrySetException(NetworkException.Host("the NAT network has stopped"));
        }
    }

    private sealed record HostForwardChange(PublishedPort Port, bool Add)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// Out of descriptors, libslirp cannot accept a connection to a published port and leaves it waiting, so the
    /// listener stays readable and every poll returns at once. After this many busy turns in a row the loop checks
    /// for a shortage, and while there is one it rests <see cref="ShortageRest"/> between turns instead of spinning.
    /// </summary>
    private const int BusyTurnsBeforeShortageCheck = 256;

    private static readonly TimeSpan ShortageRest = TimeSpan.FromMilliseconds(20);

    private void Loop(SlirpStack stack, IFrameSink fromGuest)
    {
        var busyTurns = 0;
        while (!_stopping)
        {
            ApplyForwardChanges(stack);
            _poll.Clear();
            var wake = _poll.Add(_wake.ReadFd, LibC.POLLIN);
            var timeout = Earliest(_link.AddTo(_poll), stack.AddTo(_poll), FaultTimeout());
            var ready = _poll.Wait(timeout);
            stack.Serve(waitFailed: ready < 0);
            if (ready > 0)
            {
                if (_poll.ReturnedEvents(wake) != 0)
                {
                    _wake.Drain();
                }
                _link.Serve(_poll, fromGuest);
            }
            stack.FireDueTimers();
            _link.Flush();
            FaultInjection.ThrowIfDue(ServiceName, _faultDeadline);
            busyTurns = ready > 0 ? busyTurns + 1 : 0;
            if (busyTurns >= BusyTurnsBeforeShortageCheck && !DescriptorShortage.OfProcess.CanOpenOne())
            {
                DescriptorShortage.OfProcess.Report(_notice);
                Thread.Sleep(ShortageRest);
                // Checked again after the next busy turn, until descriptors are back.
                busyTurns = BusyTurnsBeforeShortageCheck - 1;
            }
            else if (busyTurns >= BusyTurnsBeforeShortageCheck)
            {
                busyTurns = 0;
            }
        }
    }

    /// <summary>How long until the injected fault is due; -1 without one.</summary>
    private int FaultTimeout() =>
        _faultDeadline is { } due ? (int)Math.Clamp(due - Environment.TickCount64, 0, int.MaxValue) : -1;

    /// <summary>The shortest of poll timeouts, where -1 means no limit.</summary>
    private static int Earliest(params ReadOnlySpan<int> timeouts)
    {
        var earliest = -1;
        foreach (var timeout in timeouts)
        {
            if (timeout >= 0 && (earliest < 0 || timeout < earliest))
            {
                earliest = timeout;
            }
        }
        return earliest;
    }
}
