using System.Globalization;
using System.Net.Sockets;
using Lkrun.Services.Interop;
using Lkrun.Services.State;

namespace Lkrun.Services.Vsock;

/// <summary>
/// The host's view of guest vsock ports, in hyperkit's naming, whichever transport carries the streams: a program
/// connects to <c>&lt;state&gt;/guest.PPPPPPPP</c> to reach guest port P, and listens on
/// <c>&lt;state&gt;/00000002.PPPPPPPP</c> to accept guest connections to host port P (P as 8 lowercase hex digits).
/// <see cref="Create"/> makes the guest.* sockets, mode 0600, before the guest boots; <see cref="DisposeAsync"/>
/// removes them.
/// <para>
/// Threading: one accept loop per guest.* socket, on the thread pool, hands each connection to the transport that
/// serves the front end, or closes it at once while none does (as when the guest has no driver yet). Out of
/// descriptors, the loops refuse waiting connections (<see cref="DescriptorShortage"/>) rather than leave them hanging. Host
/// sockets for guest connections are opened on the transport's threads. Only .NET sockets: it runs the same on
/// macOS as on Linux.
/// </para>
/// </summary>
public sealed class UnixSocketFrontEnd : IAsyncDisposable
{
    private const int Backlog = 128;

    private readonly StateLayout _layout;
    private readonly Action<string>? _log;
    private readonly List<(uint Port, string Path, Socket Socket)> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly CancellationTokenSource _stopping = new();
    private IGuestConnector? _transport;
    private bool _disposed;

    private UnixSocketFrontEnd(StateLayout layout, Action<string>? log)
    {
        _layout = layout;
        _log = log;
    }

    /// <summary>
    /// Creates and listens on <c>guest.PPPPPPPP</c> for each of <paramref name="exposedGuestPorts"/> in the state
    /// dir of <paramref name="layout"/> (a stale socket file of an earlier run is replaced). Throws with a one-line
    /// message naming the socket when one cannot be created, or when the options are invalid.
    /// </summary>
    public static UnixSocketFrontEnd Create(StateLayout layout, IReadOnlyList<uint> exposedGuestPorts, Action<string>? log = null)
    {
        if (!Directory.Exists(layout.Directory))
        {
            throw new IOException($"vsock: state directory {layout.Directory} does not exist");
        }

        var duplicate = exposedGuestPorts.GroupBy(port => port).FirstOrDefault(group => group.Count() > 1);
        if (duplicate is not null)
        {
            throw new ArgumentException($"vsock: guest port {duplicate.Key} is exposed twice");
        }

        DescriptorShortage.OfProcess.Reserve();
        var frontEnd = new UnixSocketFrontEnd(layout, log);
        try
        {
            foreach (var port in exposedGuestPorts)
            {
                var path = layout.GuestVsockSocket(port);
                frontEnd._listeners.Add((port, path, Listen(path)));
            }
        }
        catch (IOException e)
        {
            frontEnd.RemoveListeners();
            throw new IOException($"vsock: {e.Message}", e);
        }

        foreach (var (port, path, socket) in frontEnd._listeners)
        {
            frontEnd._acceptLoops.Add(frontEnd.AcceptLoopAsync(port, Path.GetFileName(path), socket));
        }

        return frontEnd;
    }

    /// <summary>Makes <paramref name="transport"/> the one that receives host connections to guest.* sockets.</summary>
    internal void Attach(IGuestConnector transport)
    {
        if (Interlocked.CompareExchange(ref _transport, transport, null) is not null)
        {
            throw new InvalidOperationException("vsock: the front end is already served by a transport");
        }
    }

    /// <summary>Stops handing connections to <paramref name="transport"/>; later ones are closed at once.</summary>
    internal void Detach(IGuestConnector transport) => Interlocked.CompareExchange(ref _transport, null, transport);

    /// <summary>
    /// A connected socket to the host listener for <paramref name="port"/>, or null when nobody takes the connection
    /// (no socket file, nobody listening, or its backlog is full). Never blocks.
    /// </summary>
    internal Socket? TryConnectToHost(uint port)
    {
        Socket socket;
        try
        {
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = false };
        }
        catch (SocketException e) when (DescriptorShortage.IsShortage(e))
        {
            DescriptorShortage.OfProcess.Report(_log);
            return null;
        }

        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(_layout.HostVsockSocket(port)));
            return socket;
        }
        catch (Exception e) when (e is SocketException or ArgumentException)
        {
            socket.Dispose();
            return null;
        }
    }

    /// <summary>The host ports whose <c>00000002.PPPPPPPP</c> socket file exists now (whether or not anyone listens on it).</summary>
    internal HashSet<uint> FindHostListeners()
    {
        var ports = new HashSet<uint>();
        var prefix = StateLayout.HostVsockSocketName(0)[..^8];
        try
        {
            foreach (var path in Directory.EnumerateFiles(_layout.Directory, prefix + "*"))
            {
                var name = Path.GetFileName(path);
                if (uint.TryParse(name.AsSpan(prefix.Length), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var port)
                    && name == StateLayout.HostVsockSocketName(port))
                {
                    ports.Add(port);
                }
            }
        }
        catch (DirectoryNotFoundException)
        {
            // The state directory was removed under us: no host program can listen any more.
        }

        return ports;
    }

    /// <summary>Stops accepting, closes the guest.* sockets and removes their files.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await _stopping.CancelAsync().ConfigureAwait(false);
        RemoveListeners();
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        _stopping.Dispose();
    }

    /// <summary>
    /// Binds and listens on <paramref name="path"/> with mode 0600. A socket file that nobody listens on any more is
    /// replaced; one that is still served is reported as in use.
    /// </summary>
    private static Socket Listen(string path)
    {
        if (File.Exists(path) || Directory.Exists(path))
        {
            if (!Posix.IsSocketFile(path))
            {
                throw new IOException($"{path}: exists and is not a socket");
            }

            if (!IsStale(path))
            {
                throw new IOException($"{path}: already in use");
            }

            File.Delete(path);
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
        }
        catch (Exception e) when (e is SocketException or ArgumentException)
        {
            socket.Dispose();
            throw new IOException(e is ArgumentException ? $"{path}: socket path too long" : $"{path}: {e.Message}", e);
        }

        try
        {
            // The mode is set before listen(), so nobody can connect while the file still has the umask's mode.
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(Backlog);
            return socket;
        }
        catch (Exception e)
        {
            socket.Dispose();
            File.Delete(path);
            throw e as IOException ?? new IOException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>True when the socket file at <paramref name="path"/> refuses connections (its server is gone).</summary>
    private static bool IsStale(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = false };
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return false;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode == SocketError.ConnectionRefused;
        }
    }

    private async Task AcceptLoopAsync(uint port, string name, Socket listener)
    {
        var complained = false;
        while (true)
        {
            Socket connection;
            try
            {
                connection = await DescriptorShortage.OfProcess.AcceptAsync(listener, listener.AcceptAsync, _log, e =>
                {
                    if (!complained)
                    {
                        _log?.Invoke($"vsock: accepting on {name}: {e.Message}");
                        complained = true;
                    }
                }, _stopping.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return;
            }

            complained = false;
            if (Volatile.Read(ref _transport) is { } transport)
            {
                transport.ConnectToGuest(port, connection);
            }
            else
            {
                connection.Dispose();
            }
        }
    }

    private void RemoveListeners()
    {
        foreach (var (_, path, socket) in _listeners)
        {
            socket.Dispose();
            try
            {
                File.Delete(path);
            }
            catch (DirectoryNotFoundException)
            {
                // The state directory went first, with the socket files in it.
            }
        }

        _listeners.Clear();
    }
}
