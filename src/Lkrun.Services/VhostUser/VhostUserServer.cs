using Lkrun.Services.Interop;

namespace Lkrun.Services.VhostUser;

/// <summary>
/// The listening vhost-user socket. The front-end (QEMU, a socket chardev in client mode) connects; one front-end
/// is served at a time and a second one is refused. When the front-end disconnects or breaks the protocol, the
/// device is reset and the socket waits for the next connection (QEMU's reconnect option, or a new QEMU).
/// </summary>
internal sealed class VhostUserServer : IDisposable
{
    private readonly string _path;
    private readonly EventLoop _loop;
    private readonly VhostUserDispatcher _dispatcher;
    private readonly Action<string>? _log;
    private readonly FileDescriptor _listener;
    private readonly EventRegistration _listenerRegistration;
    private readonly Handler _listenerHandler;
    private VhostUserEndpoint? _endpoint;
    private EventRegistration? _endpointRegistration;

    /// <summary>Binds <paramref name="socketPath"/> (mode 0600) and starts accepting on <paramref name="loop"/>.</summary>
    public VhostUserServer(string socketPath, IVhostUserBackend backend, EventLoop loop, Action<string>? log)
    {
        _path = socketPath;
        _loop = loop;
        _log = log;
        _dispatcher = new VhostUserDispatcher(backend, loop, log is null ? null : message => log($"vhost-user {socketPath}: {message}"));
        _listener = UnixSocket.Listen(socketPath, UnixSocket.OwnerOnlyMode, backlog: 4);
        _listenerHandler = new Handler(_ => Accept());
        _listenerRegistration = loop.Register(_listener.Number, EventLoop.Readable, _listenerHandler);
    }

    public bool IsConnected => _endpoint is not null;

    private void Accept()
    {
        while (UnixSocket.Accept(_listener.Number) is { } socket)
        {
            if (_endpoint is not null)
            {
                _log?.Invoke($"vhost-user {_path}: a second front-end connected; refused");
                socket.Dispose();
                continue;
            }

            _endpoint = new VhostUserEndpoint(socket);
            _endpointRegistration = _loop.Register(_endpoint.Fd, EventLoop.Readable, new Handler(OnEndpointEvents));
        }
    }

    private void OnEndpointEvents(uint events)
    {
        if (_endpoint is not { } endpoint)
        {
            return;
        }

        try
        {
            using var message = endpoint.Receive();
            if (message is null)
            {
                Disconnect(null);
                return;
            }

            var reply = _dispatcher.Handle(message);
            if (reply is not null)
            {
                endpoint.Reply(message.Header, reply);
            }
        }
        catch (VhostUserProtocolException e)
        {
            Disconnect(e.Message);
        }
        catch (SystemCallException e)
        {
            Disconnect(e.Message);
        }
    }

    private void Disconnect(string? reason)
    {
        if (reason is not null)
        {
            _log?.Invoke($"vhost-user {_path}: {reason}; closing the connection");
        }

        _endpointRegistration?.Dispose();
        _endpointRegistration = null;
        _endpoint?.Dispose();
        _endpoint = null;
        _dispatcher.Reset();
    }

    public void Dispose()
    {
        Disconnect(null);
        _listenerRegistration.Dispose();
        _listener.Dispose();
        File.Delete(_path);
    }

    private sealed class Handler(Action<uint> onEvents) : IEventHandler
    {
        public void OnEvents(uint events) => onEvents(events);
    }
}
