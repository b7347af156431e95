using System.Net.Sockets;
using Lkrun.Services.Faults;

namespace Lkrun.Services.Vsock;

/// <summary>Timings of a <see cref="VsockStreamTransport"/>; tests shorten them.</summary>
internal sealed record StreamTransportOptions
{
    /// <summary>How long the guest may take to accept a host connection before the host socket is closed.</summary>
    public TimeSpan ConnectTimeout { get; init; } = VsockLimits.ConnectTimeout;

    public TimeSpan HostListenerRescan { get; init; } = VsockLimits.HostListenerRescan;

    /// <summary>When the worker is to fail on purpose, after its start (<see cref="FaultInjection"/>); null for never.</summary>
    public TimeSpan? FaultDelay { get; init; } = FaultInjection.DelayFor(VsockLimits.FaultService);
}

/// <summary>
/// The transport beneath a <see cref="UnixSocketFrontEnd"/> for a hypervisor that hands over one connected
/// descriptor per vsock stream (Virtualization.framework's <c>VZVirtioSocketDevice</c>, reached through
/// <see cref="IGuestSocketDevice"/>). Runs on macOS as on Linux: .NET sockets over the descriptors, no epoll.
/// <para>
/// Host to guest: a connection to guest.P becomes <see cref="IGuestSocketDevice.Connect"/>; the host socket is
/// closed when the guest refuses or has not answered within the connect timeout (the framework does not answer at
/// all when nothing listens). Guest to host: the framework takes guest connections only on ports with a listener,
/// so the transport listens on every port whose <c>00000002.PPPPPPPP</c> socket exists: it looks at start and then
/// every <see cref="VsockLimits.HostListenerRescan"/>. A rescan rather than a file watcher: a directory of a few
/// entries costs microseconds to read, it works the same on every system, and it cannot miss an event (inotify
/// overflows, FSEvents coalesces and reports late); a guest that connects before the rescan, or to a socket file
/// nobody serves, is refused as it would be without a listener. Each accepted stream is relayed by a
/// <see cref="StreamRelay"/>.
/// </para>
/// <para>
/// Threading: the worker (the rescans) and the relays run on the thread pool; the framework's callbacks only do a
/// nonblocking unix connect and hand over to the pool, so its queue is never held up.
/// </para>
/// </summary>
public sealed class VsockStreamTransport : IVsockTransport, IGuestConnector
{
    private readonly UnixSocketFrontEnd _frontEnd;
    private readonly IGuestSocketDevice _device;
    private readonly StreamTransportOptions _options;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly HashSet<uint> _listening = [];
    private readonly Lock _gate = new();
    private int _streams;
    private bool _closed;
    private Exception? _failure;
    private Task? _stop;
    private Task _worker = Task.CompletedTask;

    private VsockStreamTransport(UnixSocketFrontEnd frontEnd, IGuestSocketDevice device, StreamTransportOptions options)
    {
        _frontEnd = frontEnd;
        _device = device;
        _options = options;
    }

    /// <summary>
    /// Listens, through <paramref name="device"/>, on the host ports whose sockets exist now, and starts serving
    /// <paramref name="frontEnd"/>'s sockets; the guest may run already or start later. <see cref="FaultInjection"/>
    /// can make the transport fail on purpose (<c>LKRUN_FAULT=vsock=SECONDS</c>).
    /// </summary>
    public static VsockStreamTransport Start(UnixSocketFrontEnd frontEnd, IGuestSocketDevice device) =>
        Start(frontEnd, device, new StreamTransportOptions());

    internal static VsockStreamTransport Start(UnixSocketFrontEnd frontEnd, IGuestSocketDevice device, StreamTransportOptions options)
    {
        var transport = new VsockStreamTransport(frontEnd, device, options);
        frontEnd.Attach(transport);
        try
        {
            transport.UpdateListeners();
        }
        catch
        {
            transport.StopAsync().GetAwaiter().GetResult();
            throw;
        }

        transport._worker = transport.RunAsync();
        return transport;
    }

    /// <summary>Completes when the transport stopped after <see cref="DisposeAsync"/>; faults (<c>the vsock device stopped: ...</c>) if it failed on its own.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Host streams being relayed or waiting for the guest.</summary>
    internal int StreamCount => Volatile.Read(ref _streams);

    /// <summary>Stops listening for the guest, ends every stream and releases its descriptor.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _worker.ConfigureAwait(false);
        await StopAsync().ConfigureAwait(false);
        Complete();
    }

    void IGuestConnector.ConnectToGuest(uint guestPort, Socket connection)
    {
        if (!TryBeginStream())
        {
            connection.Dispose();
            return;
        }

        _ = RunStreamAsync(ConnectAndRelayAsync(guestPort, connection));
    }

    private async Task ConnectAndRelayAsync(uint guestPort, Socket connection)
    {
        IGuestStream? stream;
        try
        {
            var pending = new PendingConnect();
            _device.Connect(guestPort, pending.Complete);
            stream = await pending.WaitAsync(_options.ConnectTimeout, _stopping.Token).ConfigureAwait(false);
        }
        catch
        {
            // The engine broke its contract (Connect threw): the transport fails, and says why.
            connection.Dispose();
            throw;
        }

        if (stream is null)
        {
            connection.Dispose();
            return;
        }

        await StreamRelay.RunAsync(connection, stream, _stopping.Token).ConfigureAwait(false);
    }

    /// <summary>A guest connection to host port <paramref name="port"/>, on the framework's thread: connect, never wait.</summary>
    private bool AcceptFromGuest(uint port, IGuestStream stream)
    {
        if (!TryBeginStream())
        {
            stream.Dispose();
            return false;
        }

        if (_frontEnd.TryConnectToHost(port) is not { } connection)
        {
            EndStream();
            stream.Dispose();
            return false;
        }

        _ = RunStreamAsync(Task.Run(() => StreamRelay.RunAsync(connection, stream, _stopping.Token)));
        return true;
    }

    private bool TryBeginStream()
    {
        lock (_gate)
        {
            if (_closed || _streams >= VsockLimits.MaxConnections)
            {
                return false;
            }

            _streams++;
            return true;
        }
    }

    private void EndStream()
    {
        lock (_gate)
        {
            _streams--;
            if (_closed && _streams == 0)
            {
                _drained.TrySetResult();
            }
        }
    }

    private async Task RunStreamAsync(Task stream)
    {
        try
        {
            await stream.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // Streams end on their own for every expected reason; anything else is a defect worth stopping for.
            Fail(e);
        }
        finally
        {
            EndStream();
        }
    }

    private async Task RunAsync()
    {
        try
        {
            var faultDeadline = _options.FaultDelay is { } delay ? Environment.TickCount64 + (long)delay.TotalMilliseconds : (long?)null;
            using var timer = new PeriodicTimer(_options.HostListenerRescan);
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                FaultInjection.ThrowIfDue(VsockLimits.FaultService, faultDeadline);
                UpdateListeners();
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            Fail(e);
        }
    }

    /// <summary>Listens on the ports whose 00000002.PPPPPPPP socket exists, and only those.</summary>
    private void UpdateListeners()
    {
        var present = _frontEnd.FindHostListeners();
        _listening.RemoveWhere(port =>
        {
            if (present.Contains(port))
            {
                return false;
            }

            _device.StopListening(port);
            return true;
        });

        foreach (var port in present)
        {
            if (!_listening.Contains(port))
            {
                _device.Listen(port, stream => AcceptFromGuest(port, stream));
                _listening.Add(port);
            }
        }
    }

    /// <summary>The transport failed on its own: stop everything, then report the cause through <see cref="Completion"/>.</summary>
    private void Fail(Exception cause)
    {
        Interlocked.CompareExchange(ref _failure, cause, null);
        _ = StopAsync().ContinueWith(_ => Complete(), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
    }

    /// <summary>Once stopped (every stream ended, so no failure can come later): the first failure, or success.</summary>
    private void Complete()
    {
        if (Volatile.Read(ref _failure) is { } failure)
        {
            _completion.TrySetException(VsockLimits.Stopped(failure));
        }
        else
        {
            _completion.TrySetResult();
        }
    }

    /// <summary>Stops once, whoever asks first: no new streams, no listeners, every stream ended.</summary>
    private Task StopAsync()
    {
        lock (_gate)
        {
            if (_stop is not null)
            {
                return _stop;
            }

            _closed = true;
            if (_streams == 0)
            {
                _drained.TrySetResult();
            }

            _stop = Task.Run(StopCoreAsync);
            return _stop;
        }
    }

    private async Task StopCoreAsync()
    {
        _frontEnd.Detach(this);
        await _stopping.CancelAsync().ConfigureAwait(false);
        // The worker no longer touches the listeners: it is done, or its failure brought us here.
        await _worker.ConfigureAwait(false);
        try
        {
            foreach (var port in _listening)
            {
                _device.StopListening(port);
            }
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, e, null);
        }

        _listening.Clear();
        await _drained.Task.ConfigureAwait(false);
    }

    /// <summary>One host-to-guest connect: the framework's answer, or nothing once the timeout or a stop came first.</summary>
    private sealed class PendingConnect
    {
        private readonly TaskCompletionSource<IGuestStream?> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Complete(IGuestStream? stream, Exception? error)
        {
            if (!_result.TrySetResult(stream))
            {
                // Too late: the host socket was closed already.
                stream?.Dispose();
            }
        }

        public async Task<IGuestStream?> WaitAsync(TimeSpan timeout, CancellationToken stopping)
        {
            using var giveUp = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            giveUp.CancelAfter(timeout);
            await using (giveUp.Token.Register(() => _result.TrySetResult(null)).ConfigureAwait(false))
            {
                return await _result.Task.ConfigureAwait(false);
            }
        }
    }
}
