using System.Net;
using System.Net.Sockets;
using Lkrun.Services.Interop;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging.Abstractions;

namespace Lkrun.Control;

/// <summary>
/// Kestrel's transport for the control socket: Kestrel's own socket connections, accepted differently. Out of
/// descriptors, Kestrel's listener stops accepting for good and a client waits in the backlog for ever; this one
/// refuses waiting clients while descriptors are short and accepts again once they are back
/// (<see cref="DescriptorShortage"/>).
/// </summary>
internal sealed class ControlSocketTransport : IConnectionListenerFactory
{
    private const int Backlog = 16;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(endpoint);
            socket.Listen(Backlog);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        DescriptorShortage.OfProcess.Reserve();
        return ValueTask.FromResult<IConnectionListener>(new Listener(socket, endpoint));
    }

    private sealed class Listener(Socket socket, EndPoint endpoint) : IConnectionListener
    {
        private readonly SocketConnectionContextFactory _connections = new(new SocketConnectionFactoryOptions(), NullLogger.Instance);

        public EndPoint EndPoint => endpoint;

        /// <summary>The next connection, or null once the listener is closed (Kestrel's signal to stop accepting).</summary>
        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                var accepted = await DescriptorShortage.OfProcess.AcceptAsync(socket, socket.AcceptAsync, log: null, complain: null, cancellationToken);
                return _connections.Create(accepted);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                return null;
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            _connections.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
