using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;

namespace Lkrun.Control;

/// <summary>Speaks to a running VM's control API over its unix socket, for <c>lkrun stop</c>, <c>ps</c> and <c>console</c>.</summary>
public sealed class ControlClient : IDisposable
{
    private readonly HttpClient _http;

    public ControlClient(string socketPath, TimeSpan? timeout = null)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellation) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellation);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
            UseProxy = false,
        };
        _http = new HttpClient(handler) { BaseAddress = new Uri("http://lkrun/"), Timeout = timeout ?? TimeSpan.FromSeconds(10) };
    }

    public async Task<VmStateReply> GetStateAsync(CancellationToken cancellation) =>
        await ReadAsync(await _http.GetAsync("vm/state", cancellation), ControlJson.Default.VmStateReply, cancellation);

    public async Task<VmInspection> InspectAsync(CancellationToken cancellation) =>
        await ReadAsync(await _http.GetAsync("vm/inspect", cancellation), ControlJson.Default.VmInspection, cancellation);

    /// <summary>Asks for Stop, HardStop, Pause or Resume; a <see cref="ControlException"/> with the API's message when refused.</summary>
    public async Task ChangeStateAsync(string state, double? timeoutSeconds, CancellationToken cancellation)
    {
        using var response = await _http.PostAsJsonAsync("vm/state", new VmStateChange(state, timeoutSeconds), ControlJson.Default.VmStateChange, cancellation);
        await ThrowIfFailedAsync(response, cancellation);
    }

    public void Dispose() => _http.Dispose();

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, CancellationToken cancellation)
    {
        using (response)
        {
            await ThrowIfFailedAsync(response, cancellation);
            return await response.Content.ReadFromJsonAsync(type, cancellation) ?? throw new ControlException("the control API answered nothing");
        }
    }

    private static async Task ThrowIfFailedAsync(HttpResponseMessage response, CancellationToken cancellation)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        string message;
        try
        {
            message = (await response.Content.ReadFromJsonAsync(ControlJson.Default.ErrorReply, cancellation))?.Error ?? response.ReasonPhrase ?? "";
        }
        catch (JsonException)
        {
            message = response.ReasonPhrase ?? "";
        }
        throw new ControlException($"{message} (HTTP {(int)response.StatusCode})");
    }
}

/// <summary>The control API refused a request, or answered something that is not its own.</summary>
public sealed class ControlException(string message) : Exception(message);
