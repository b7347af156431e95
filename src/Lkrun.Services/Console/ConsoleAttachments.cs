using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Lkrun.Services.Interop;

namespace Lkrun.Services.Console;

/// <summary>
/// Where <c>lkrun console</c> attaches to a running VM's console: a unix socket in the state dir (mode 0600).
/// <paramref name="RefusalReason"/> is set when attaching is refused because the console is already on a terminal.
/// </summary>
public sealed record ConsoleAttachPoint(string SocketPath, string? RefusalReason = null);

/// <summary>
/// Serves the console socket. One terminal is attached at a time; a second is refused with one line. The protocol:
/// <list type="number">
/// <item>the client sends <c>attach ROWS\n</c>, the height of its terminal;</item>
/// <item>the server answers <c>ok\n</c>, then the last ROWS lines the console printed, then what it prints from
/// then on; or <c>refused REASON\n</c>, and closes;</item>
/// <item>after <c>ok</c>, what the client sends is typed on the console, through the escape keys with Ctrl-A d:
/// on Ctrl-A d the server closes the connection (the client, which watches its own keys the same way, knows it
/// detached); any other end of the connection means the VM has stopped.</item>
/// </list>
/// A client too slow to take the output is let go rather than allowed to hold up the guest.
/// </summary>
internal sealed class ConsoleAttachments : IAsyncDisposable
{
    public const string Accepted = "ok";
    public const string Refused = "refused";
    public const int MaxRows = 1000;

    private const int MaxHandshakeBytes = 64;
    private const int DefaultRows = 24;

    /// <summary>Output chunks one client may have waiting; at the relay's 16 KiB reads, megabytes.</summary>
    private const int MaxQueuedChunks = 256;

    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(5);

    private readonly ConsoleAttachPoint _point;
    private readonly Socket _listener;
    private readonly ConsoleHistory _history = new();
    private readonly Action<ReadOnlyMemory<byte>> _typed;
    private readonly Action<ConsoleCommand> _onCommand;
    private readonly object _gate = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _accepting;
    private Attachment? _current;

    private ConsoleAttachments(ConsoleAttachPoint point, Socket listener, Action<ReadOnlyMemory<byte>> typed, Action<ConsoleCommand> onCommand)
    {
        _point = point;
        _listener = listener;
        _typed = typed;
        _onCommand = onCommand;
        _accepting = AcceptLoopAsync();
    }

    /// <summary>Listens on <paramref name="point"/>'s socket; typed keys go to <paramref name="typed"/>, commands other than help and detach to <paramref name="onCommand"/>.</summary>
    public static ConsoleAttachments Listen(ConsoleAttachPoint point, Action<ReadOnlyMemory<byte>> typed, Action<ConsoleCommand> onCommand)
    {
        DescriptorShortage.OfProcess.Reserve();
        File.Delete(point.SocketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(point.SocketPath));
            File.SetUnixFileMode(point.SocketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            listener.Listen(4);
        }
        catch
        {
            listener.Dispose();
            File.Delete(point.SocketPath);
            throw;
        }
        return new ConsoleAttachments(point, listener, typed, onCommand);
    }

    /// <summary>What the console printed: kept for later attachments and sent to the current one.</summary>
    public void Record(ReadOnlySpan<byte> output)
    {
        lock (_gate)
        {
            _history.Append(output);
            _current?.Send(output.ToArray());
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stopping.Cancel();
        _listener.Dispose();
        File.Delete(_point.SocketPath);
        Attachment? current;
        lock (_gate)
        {
            current = _current;
        }
        if (current is not null)
        {
            await current.CloseAsync();
        }
        await _accepting;
    }

    private async Task AcceptLoopAsync()
    {
        var handshakes = new List<Task>();
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                // Out of descriptors, a terminal that tries to attach is refused and the next one gets in again.
                client = await DescriptorShortage.OfProcess.AcceptAsync(_listener, _listener.AcceptAsync, log: null, complain: null, _stopping.Token);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                // Only stopping ends the loop: the helper retries every other error.
                break;
            }
            handshakes.RemoveAll(task => task.IsCompleted);
            handshakes.Add(HandshakeAsync(client));
        }
        await Task.WhenAll(handshakes);
    }

    private async Task HandshakeAsync(Socket client)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            timeout.CancelAfter(HandshakeTimeout);
            var rows = ParseRequest(await ReadLineAsync(client, timeout.Token));
            if (rows is null)
            {
                await RefuseAsync(client, "expected 'attach ROWS'");
                return;
            }
            if (_point.RefusalReason is { } reason)
            {
                await RefuseAsync(client, reason);
                return;
            }
            Attachment? attachment = null;
            lock (_gate)
            {
                if (_current is null)
                {
                    // The screenful and the live output are queued under one lock, so nothing falls between them.
                    attachment = new Attachment(this, client);
                    attachment.Send(Encoding.ASCII.GetBytes(Accepted + "\n"));
                    attachment.Send(_history.LastLines(rows.Value));
                    _current = attachment;
                }
            }
            if (attachment is null)
            {
                await RefuseAsync(client, "another terminal is attached to this console (one at a time)");
                return;
            }
            await attachment.RunAsync();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            client.Dispose();
        }
    }

    private static int? ParseRequest(string? line)
    {
        if (line is null || !line.StartsWith("attach", StringComparison.Ordinal))
        {
            return null;
        }
        var rows = line["attach".Length..].Trim();
        if (rows.Length == 0)
        {
            return DefaultRows;
        }
        return int.TryParse(rows, NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count is > 0 and <= MaxRows ? count : null;
    }

    /// <summary>One line of at most <see cref="MaxHandshakeBytes"/>, read a byte at a time so nothing after it is taken.</summary>
    private static async Task<string?> ReadLineAsync(Socket client, CancellationToken cancellation)
    {
        var line = new byte[MaxHandshakeBytes];
        for (var length = 0; length < line.Length; length++)
        {
            if (await client.ReceiveAsync(line.AsMemory(length, 1), SocketFlags.None, cancellation) == 0)
            {
                return null;
            }
            if (line[length] == (byte)'\n')
            {
                return Encoding.ASCII.GetString(line, 0, length);
            }
        }
        return null;
    }

    private static async Task RefuseAsync(Socket client, string reason)
    {
        using (client)
        {
            await client.SendAsync(Encoding.UTF8.GetBytes($"{Refused} {reason}\n"), SocketFlags.None);
            client.Shutdown(SocketShutdown.Both);
        }
    }

    private void Detached(Attachment attachment)
    {
        lock (_gate)
        {
            if (_current == attachment)
            {
                _current = null;
            }
        }
    }

    /// <summary>One attached terminal: a send loop fed through a bounded queue, and a receive loop for its keys.</summary>
    private sealed class Attachment(ConsoleAttachments owner, Socket socket)
    {
        private readonly Channel<byte[]> _outgoing = Channel.CreateBounded<byte[]>(
            new BoundedChannelOptions(MaxQueuedChunks) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        private readonly EscapeKeys _keys = new(detachable: true);
        private readonly CancellationTokenSource _closing = new();
        private Task _sending = Task.CompletedTask;

        /// <summary>Queues bytes for the terminal; one that cannot keep up is let go.</summary>
        public void Send(byte[] bytes)
        {
            if (bytes.Length > 0 && !_outgoing.Writer.TryWrite(bytes))
            {
                _closing.Cancel();
            }
        }

        /// <summary>Runs until the terminal detaches or goes away, or <see cref="CloseAsync"/>.</summary>
        public async Task RunAsync()
        {
            _sending = SendLoopAsync(_closing.Token);
            try
            {
                await ReceiveLoopAsync(_closing.Token);
            }
            finally
            {
                owner.Detached(this);
                _closing.Cancel();
                _outgoing.Writer.TryComplete();
                await _sending;
                socket.Dispose();
            }
        }

        /// <summary>Ends the attachment as the VM stops: what is queued still goes out first.</summary>
        public async Task CloseAsync()
        {
            _outgoing.Writer.TryComplete();
            await Task.WhenAny(_sending, Task.Delay(TimeSpan.FromSeconds(2)));
            try
            {
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Already gone.
            }
        }

        private async Task SendLoopAsync(CancellationToken cancellation)
        {
            try
            {
                await foreach (var bytes in _outgoing.Reader.ReadAllAsync(cancellation))
                {
                    await socket.SendAsync(bytes, SocketFlags.None, cancellation);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                // The terminal went away, or was let go.
            }
            finally
            {
                _closing.Cancel();
            }
        }

        private async Task ReceiveLoopAsync(CancellationToken cancellation)
        {
            var typed = new byte[1024];
            var toGuest = new byte[typed.Length * 2];
            try
            {
                int read;
                while ((read = await socket.ReceiveAsync(typed, SocketFlags.None, cancellation)) > 0)
                {
                    var detach = false;
                    var count = _keys.Filter(typed.AsSpan(0, read), toGuest, command =>
                    {
                        switch (command)
                        {
                            case ConsoleCommand.Detach:
                                detach = true;
                                break;
                            case ConsoleCommand.Help:
                                Send(Encoding.UTF8.GetBytes($"\r\n{_keys.Help}\r\n"));
                                break;
                            default:
                                owner._onCommand(command);
                                break;
                        }
                    });
                    if (count > 0)
                    {
                        owner._typed(toGuest.AsMemory(0, count).ToArray());
                    }
                    if (detach)
                    {
                        return;
                    }
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                // The terminal went away, or the console is stopping.
            }
        }
    }
}
