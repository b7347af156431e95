using Lkrun.Services.Interop;

namespace Lkrun.Services.Vsock;

/// <summary>
/// The host's view of guest vsock ports, in hyperkit's naming: a program connects to
/// <c>&lt;state&gt;/guest.PPPPPPPP</c> to reach guest port P, and listens on <c>&lt;state&gt;/00000002.PPPPPPPP</c> to
/// accept guest connections to host port P (P as 8 lowercase hex digits). The guest.* sockets are created with
/// mode 0600 before the guest boots and removed on dispose.
/// </summary>
internal sealed class UnixSocketFrontEnd : IHostConnector, IDisposable
{
    private const int AcceptsPerEvent = 64;

    private readonly string _stateDirectory;
    private readonly List<Listener> _listeners = [];

    public UnixSocketFrontEnd(string stateDirectory, IReadOnlyList<uint> exposedGuestPorts)
    {
        _stateDirectory = stateDirectory;
        try
        {
            foreach (var port in exposedGuestPorts)
            {
                var path = GuestSocketPath(stateDirectory, port);
                _listeners.Add(new Listener(port, path, UnixSocket.Listen(path, UnixSocket.OwnerOnlyMode)));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public static string GuestSocketPath(string stateDirectory, uint port) => Path.Combine(stateDirectory, $"guest.{port:x8}");

    public static string HostSocketPath(string stateDirectory, uint port) => Path.Combine(stateDirectory, $"{VsockLimits.HostCid:x8}.{port:x8}");

    /// <summary>Starts handing connections to guest.* sockets to <paramref name="muxer"/>.</summary>
    public void Listen(EventLoop loop, VsockMuxer muxer)
    {
        foreach (var listener in _listeners)
        {
            listener.Start(loop, muxer);
        }
    }

    public FileDescriptor? TryConnect(uint port) =>
        UnixSocket.TryConnect(HostSocketPath(_stateDirectory, port), out var socket) == 0 ? socket : null;

    public void Dispose()
    {
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }

        _listeners.Clear();
    }

    private sealed class Listener(uint port, string path, FileDescriptor socket) : IEventHandler, IDisposable
    {
        private EventRegistration? _registration;
        private VsockMuxer? _muxer;

        public void Start(EventLoop loop, VsockMuxer muxer)
        {
            _muxer = muxer;
            _registration = loop.Register(socket.Number, EventLoop.Readable, this);
        }

        public void OnEvents(uint events)
        {
            for (var i = 0; i < AcceptsPerEvent && UnixSocket.Accept(socket.Number) is { } connection; i++)
            {
                _muxer!.ConnectToGuest(port, connection);
            }
        }

        public void Dispose()
        {
            _registration?.Dispose();
            socket.Dispose();
            File.Delete(path);
        }
    }
}
