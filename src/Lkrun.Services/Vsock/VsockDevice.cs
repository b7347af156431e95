using Lkrun.Services.Interop;
using Lkrun.Services.VhostUser;

namespace Lkrun.Services.Vsock;

/// <summary>What the vsock device serves: its vhost-user socket, the state directory for the per-port sockets, the
/// guest's CID and the guest ports exposed as <c>guest.PPPPPPPP</c> sockets.</summary>
public sealed record VsockDeviceOptions(string VhostUserSocketPath, string StateDirectory, uint GuestCid, IReadOnlyList<uint> ExposedGuestPorts);

/// <summary>
/// lkrun's virtio-vsock device, a vhost-user backend for QEMU's <c>vhost-user-vsock-pci</c>, running from
/// <see cref="Start"/> until <see cref="DisposeAsync"/>.
/// <para>
/// Threading: one thread around one epoll loop serves the vhost-user socket, the kick eventfds, the listening
/// guest.* sockets and every connection's host socket; no thread per connection and no async socket machinery.
/// That is what lets bytes move between guest memory and a host socket in one system call (recvmsg and sendmsg
/// with iovecs pointing into the mapped guest buffers): no intermediate copy, no managed buffer per packet.
/// The rings, the guest memory mapping and the connection table are only ever touched by this thread, so they need
/// no locks, and a new memory table cannot be mapped while a buffer of the old one is in use. Back-pressure is the
/// epoll interest set itself: a host socket is watched for reading only while the guest has credit for it and no
/// receive buffer is already promised to it, and for writing only while guest bytes wait for it. The loop sleeps in
/// epoll_wait, with a timeout only for connect and close deadlines and for batched transmit completions.
/// </para>
/// </summary>
public sealed class VsockDevice : IAsyncDisposable
{
    private readonly EventLoop _loop;
    private readonly UnixSocketFrontEnd _frontEnd;
    private readonly VsockMuxer _muxer;
    private readonly VhostUserServer _server;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Thread _thread;
    private volatile bool _stopping;

    private VsockDevice(VsockDeviceOptions options, Action<string>? log)
    {
        _loop = new EventLoop();
        try
        {
            _frontEnd = new UnixSocketFrontEnd(options.StateDirectory, options.ExposedGuestPorts);
            try
            {
                _muxer = new VsockMuxer(options.GuestCid, _loop, _frontEnd, log);
                _server = new VhostUserServer(options.VhostUserSocketPath, new VsockBackend(_muxer, options.GuestCid), _loop, log);
                _frontEnd.Listen(_loop, _muxer);
            }
            catch
            {
                _frontEnd.Dispose();
                throw;
            }
        }
        catch
        {
            _loop.Dispose();
            throw;
        }

        _thread = new Thread(Run) { IsBackground = true, Name = "lkrun vsock" };
    }

    /// <summary>
    /// Binds the vhost-user socket (QEMU connects to it) and the guest.PPPPPPPP sockets, and starts serving; returns
    /// once everything listens, so QEMU may be started next. Throws with a one-line message when a socket cannot be
    /// created (path in use, too long, directory missing) or the options are invalid.
    /// </summary>
    public static VsockDevice Start(VsockDeviceOptions options, Action<string>? log = null)
    {
        Validate(options);
        VsockDevice device;
        try
        {
            device = new VsockDevice(options, log);
        }
        catch (IOException e)
        {
            throw new IOException($"vsock: {e.Message}", e);
        }

        device._thread.Start();
        return device;
    }

    /// <summary>Where a host program connects to reach guest port <paramref name="port"/>: <c>&lt;state&gt;/guest.PPPPPPPP</c>.</summary>
    public static string GuestSocketPath(string stateDirectory, uint port) => UnixSocketFrontEnd.GuestSocketPath(stateDirectory, port);

    /// <summary>Where a host program listens for guest connections to host port <paramref name="port"/>: <c>&lt;state&gt;/00000002.PPPPPPPP</c>.</summary>
    public static string HostSocketPath(string stateDirectory, uint port) => UnixSocketFrontEnd.HostSocketPath(stateDirectory, port);

    /// <summary>Completes when the device stopped after <see cref="DisposeAsync"/>; faults if it failed on its own.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Stops the device, closes every socket and connection, and removes the socket files it created.</summary>
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

    private static void Validate(VsockDeviceOptions options)
    {
        if (options.GuestCid is <= (uint)VsockLimits.HostCid or uint.MaxValue)
        {
            throw new ArgumentException($"vsock: guest CID {options.GuestCid} is reserved");
        }

        if (!Directory.Exists(options.StateDirectory))
        {
            throw new IOException($"vsock: state directory {options.StateDirectory} does not exist");
        }

        var duplicate = options.ExposedGuestPorts.GroupBy(port => port).FirstOrDefault(group => group.Count() > 1);
        if (duplicate is not null)
        {
            throw new ArgumentException($"vsock: guest port {duplicate.Key} is exposed twice");
        }
    }

    private void Run()
    {
        try
        {
            var timeout = -1;
            while (!_stopping)
            {
                _loop.Wait(timeout);
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

            _completion.TrySetException(e);
        }
    }

    private void Shutdown()
    {
        _server.Dispose();
        _muxer.Detach();
        _frontEnd.Dispose();
        _loop.Dispose();
    }
}
