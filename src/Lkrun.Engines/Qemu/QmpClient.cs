using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Lkrun.Engines.Qemu;

/// <summary>An asynchronous QMP event, such as SHUTDOWN with its reason.</summary>
public sealed record QmpEvent(string Name, JsonElement Data);

public sealed class QmpException(string message) : Exception(message);

/// <summary>
/// A QMP connection: one JSON object per line each way. After QEMU's greeting the client must send
/// <c>qmp_capabilities</c>; then commands carry an <c>id</c> that QEMU echoes in the matching
/// <c>return</c> or <c>error</c>, and events arrive in between at any time.
/// </summary>
public sealed class QmpClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly ConcurrentDictionary<long, TaskCompletionSource<JsonElement>> _pending = new();
    private readonly Action<QmpEvent> _onEvent;
    private long _nextId;

    private QmpClient(Socket socket, Action<QmpEvent> onEvent)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _onEvent = onEvent;
    }

    /// <summary>Completes when QEMU closes the connection (it does when it exits).</summary>
    public Task Completion { get; private set; } = Task.CompletedTask;

    public static async Task<QmpClient> OpenAsync(Socket connected, Action<QmpEvent> onEvent, CancellationToken cancellation)
    {
        var client = new QmpClient(connected, onEvent);
        var reader = new StreamReader(client._stream, Encoding.UTF8);
        var greeting = await reader.ReadLineAsync(cancellation) ?? throw new QmpException("QEMU closed QMP before its greeting");
        if (!greeting.Contains("\"QMP\"", StringComparison.Ordinal))
        {
            throw new QmpException($"unexpected QMP greeting: {greeting}");
        }
        client.Completion = client.ReadLoopAsync(reader);
        await client.ExecuteAsync("qmp_capabilities", null, cancellation);
        return client;
    }

    public async Task<JsonElement> ExecuteAsync(string command, JsonObject? arguments, CancellationToken cancellation)
    {
        var id = Interlocked.Increment(ref _nextId);
        var reply = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = reply;
        var message = new JsonObject { ["execute"] = command, ["id"] = id };
        if (arguments is not null)
        {
            message["arguments"] = arguments;
        }
        var bytes = Encoding.UTF8.GetBytes(message.ToJsonString() + "\n");
        await _sendLock.WaitAsync(cancellation);
        try
        {
            await _stream.WriteAsync(bytes, cancellation);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            _pending.TryRemove(id, out _);
            throw new QmpException($"QMP {command}: QEMU is gone ({e.Message})");
        }
        finally
        {
            _sendLock.Release();
        }
        await using (cancellation.Register(() => reply.TrySetCanceled(cancellation)))
        {
            return await reply.Task;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _socket.Shutdown(SocketShutdown.Both);
        await _stream.DisposeAsync();
        try
        {
            await Completion;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
            // Closing the socket ends the read loop with an error; nothing is left to read.
        }
    }

    private async Task ReadLoopAsync(StreamReader reader)
    {
        try
        {
            string? line;
            while ((line = await reader.ReadLineAsync()) is not null)
            {
                Dispatch(line);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
            // QEMU went away; pending commands fail below.
        }
        finally
        {
            foreach (var pending in _pending.Values)
            {
                pending.TrySetException(new QmpException("QEMU closed QMP before replying"));
            }
        }
    }

    private void Dispatch(string line)
    {
        using var document = JsonDocument.Parse(line);
        var root = document.RootElement;
        if (root.TryGetProperty("event", out var name))
        {
            var data = root.TryGetProperty("data", out var d) ? d.Clone() : default;
            _onEvent(new QmpEvent(name.GetString() ?? "", data));
            return;
        }
        if (!root.TryGetProperty("id", out var idElement) || !_pending.TryRemove(idElement.GetInt64(), out var reply))
        {
            return;
        }
        if (root.TryGetProperty("error", out var error))
        {
            var description = error.TryGetProperty("desc", out var desc) ? desc.GetString() : error.ToString();
            reply.TrySetException(new QmpException(description ?? "QMP error"));
        }
        else
        {
            reply.TrySetResult(root.TryGetProperty("return", out var result) ? result.Clone() : default);
        }
    }
}
