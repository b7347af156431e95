using System.Net.Sockets;
using Lkrun.Services.Faults;
using Lkrun.Services.Interop;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Vsock;

/// <summary>
/// lkrun's virtio-vsock device, a vhost-user backend for QEMU's <c>vhost-user-vsock-pci</c>: the transport beneath
/// a <see cref="UnixSocketFrontEnd"/> on Linux, running from <see cref="Start"/> until <see cref="DisposeAsync"/>.
/// <para>
/// Threading: one thread around one epoll loop serves the vhost-user socket, the kick eventfds and every
/// connection's host socket; no thread per connection and no async socket machinery. That is what lets bytes move
/// between guest memory and a host socket in one system call (recvmsg and sendmsg with iovecs pointing into the
/// mapped guest buffers): no intermediate copy, no managed buffer per packet. The rings, the guest memory mapping
/// and the connection table are only ever touched by this thread, so they need no locks, and a new memory table
/// cannot be mapped while a buffer of the old one is in use. Host connections accepted by the front end on the
/// thread pool reach the loop through a small locked queue and a wake-up. Back-pressure is the epoll interest set
/// itself: a host socket is watched for reading only while the guest has credit for it and no receive buffer is
/// already promised to it, and for writing only while guest bytes wait for it. The loop sleeps in epoll_wait, with
/// a timeout only for connect and close deadlines and for batched transmit completions.
/// </para>
/// </summary>
public sealed class VsockDevice : IVsockTransport, IGuestConnector, IHostConnector
{
    private readonly UnixSocketFrontEnd _frontEnd;
    private readonly EventLoop _loop;
    private readonly VsockMuxer _muxer;
    private readonly VhostUserServer _server;
    private readonly TimeSpan? _faultDelay;
    private readonly Action<string>? _log;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Thread _thread;
    private readonly Queue<(uint Port, FileDescriptor Socket)> _arrivals = new();
    private int _arrivalCount;
    private bool _arrivalsClosed;
    private volatile bool _stopping;

    private VsockDevice(UnixSocketFrontEnd frontEnd, string vhostUserSocketPath, uint guestCid, TimeSpan? faultDelay, Action<string>? log)
    {
        _frontEnd = frontEnd;
        _faultDelay = faultDelay;
        _log = log;
        _loop = new EventLoop();
        try
        {
            _muxer = new VsockMuxer(guestCid, _loop, this, log);
            _server = new VhostUserServer(vhostUserSocketPath, new VsockBackend(_muxer, guestCid), _loop, log);
        }
        catch
        {
            _loop.Dispose();
            throw;
        }

        _thread = new Thread(Run) { IsBackground = true, Name = "lkrun vsock" };
    }

    /// <summary>
    /// Binds the vhost-user socket (QEMU connects to it) and starts serving <paramref name="frontEnd"/>'s sockets;
    /// returns once everything listens, so QEMU may be started next. Throws with a one-line message when the socket
    /// cannot be created (path in use, too long) or the CID is reserved. <see cref="FaultInjection"/> can make the
    /// device fail on purpose (<c>LKRUN_FAULT=vsock=SECONDS</c>).
    /// </summary>
    public static VsockDevice Start(UnixSocketFrontEnd frontEnd, string vhostUserSocketPath, uint guestCid, Action<string>? log = null) =>
        Start(frontEnd, vhostUserSocketPath, guestCid, FaultInjection.DelayFor(VsockLimits.FaultService), log);

    /// <summary>As the public <see cref="Start(UnixSocketFrontEnd, string, uint, Action{string}?)"/>, with the fault delay given (tests).</summary>
    internal static VsockDevice Start(UnixSocketFrontEnd frontEnd, string vhostUserSocketPath, uint guestCid, TimeSpan? faultDelay, Action<string>? log)
    {
        if (guestCid is <= (uint)VsockLimits.HostCid or uint.MaxValue)
        {
            throw new ArgumentException($"vsock: guest CID {guestCid} is reserved");
        }

        VsockDevice device;
        try
        {
            device = new VsockDevice(frontEnd, vhostUserSocketPath, guestCid, faultDelay, log);
        }
        catch (IOException e)
        {
            throw new IOException($"vsock: {e.Message}", e);
        }

        try
        {
            frontEnd.Attach(device);
        }
        catch
        {
            device.Shutdown();
            throw;
        }

        device._thread.Start();
        return device;
    }

    /// <summary>Completes when the device stopped after <see cref="DisposeAsync"/>; faults (<c>the vsock device stopped: ...</c>) if it failed on its own.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Stops the device, closes every connection and the vhost-user socket, and removes its file.</summary>
    public async ValueTask DisposeAsync()
    {
        _stopping = true;
        _loop.Wake();
        try
        {
            await _completion.Task.ConfigureAwait(false);
        }
        catch
        {
            // Already reported through Completion.
        }
    }

    void IGuestConnector.ConnectToGuest(uint guestPort, Socket connection)
    {
        FileDescriptor socket;
        try
        {
            socket = UnixSocket.TakeOver(connection);
        }
        catch (IOException)
        {
            // Out of descriptors: the program sees its connection closed, as when the guest refuses it.
            DescriptorShortage.OfProcess.Report(_log);
            return;
        }

        lock (_arrivals)
        {
            if (_arrivalsClosed || _arrivals.Count >= VsockLimits.MaxConnections)
            {
                socket.Dispose();
                return;
            }

            _arrivals.Enqueue((guestPort, socket));
            Volatile.Write(ref _arrivalCount, _arrivals.Count);
        }

        _loop.Wake();
    }

    FileDescriptor? IHostConnector.TryConnect(uint port)
    {
        if (_frontEnd.TryConnectToHost(port) is not { } connection)
        {
            return null;
        }

        try
        {
            return UnixSocket.TakeOver(connection);
        }
        catch (IOException)
        {
            // Out of descriptors for the duplicate: the guest's connection is reset.
            DescriptorShortage.OfProcess.Report(_log);
            return null;
        }
    }

    private void Run()
    {
        try
        {
            var faultDeadline = _faultDelay is { } delay ? Environment.TickCount64 + (long)delay.TotalMilliseconds : (long?)null;
            var timeout = -1;
            while (!_stopping)
            {
                _loop.Wait(faultDeadline is { } due ? ClampTimeout(timeout, due - Environment.TickCount64) : timeout);
                FaultInjection.ThrowIfDue(VsockLimits.FaultService, faultDeadline);
                if (Volatile.Read(ref _arrivalCount) > 0)
                {
                    TakeArrivals();
                }

                _muxer.ExpireDeadlines();
                timeout = _muxer.Pump() ? 0 : _muxer.MillisecondsToNextDeadline();
            }

            Shutdown();
            _completion.TrySetResult();
        }
        catch (Exception e)
        {
            try
            {
                Shutdown();
            }
            catch (Exception cleanup)
            {
                e = new AggregateException(e, cleanup);
            }

            _completion.TrySetException(VsockLimits.Stopped(e));
        }
    }

    private static int ClampTimeout(int timeout, long untilFault) =>
        (int)Math.Clamp(untilFault, 0, timeout == -1 ? int.MaxValue : timeout);

    /// <summary>Hands connections the front end accepted to the muxer, on the loop's thread.</summary>
    private void TakeArrivals()
    {
        while (true)
        {
            (uint Port, FileDescriptor Socket) arrival;
            lock (_arrivals)
            {
                if (!_arrivals.TryDequeue(out arrival))
                {
                    Volatile.Write(ref _arrivalCount, 0);
                    return;
                }
            }

            _muxer.ConnectToGuest(arrival.Port, arrival.Socket);
        }
    }

    private void Shutdown()
    {
        _frontEnd.Detach(this);
        lock (_arrivals)
        {
            _arrivalsClosed = true;
            while (_arrivals.TryDequeue(out var arrival))
            {
                arrival.Socket.Dispose();
            }
        }

        _server.Dispose();
        _muxer.Detach();
        _loop.Dispose();
    }
}
