using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Lkrun.Spec;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Lkrun.Control;

/// <summary>
/// The control API of a running VM: HTTP/1.1 with JSON on <c>STATE/control.sock</c> (mode 0600), served by Kestrel.
/// vfkit's REST API where both have it: <c>GET /vm/state</c>, <c>POST /vm/state</c> (Stop, HardStop, Pause,
/// Resume; answered 202 once done or started), <c>GET /vm/inspect</c>; and lkrun's own <c>GET</c> and <c>POST
/// /vm/publish</c> and <c>DELETE /vm/publish/[HOSTIP:]HOSTPORT[/udp]</c>. Errors are <c>{"error": "one line"}</c>.
/// Kestrel answers malformed requests and those over its limits (400, 413, 431) itself; none of them reaches the VM.
/// </summary>
public sealed class ControlServer : IAsyncDisposable
{
    /// <summary>Requests are a line of JSON; anything near this size is not one of them.</summary>
    public const int MaxRequestBodyBytes = 16 * 1024;

    private const string PublishPath = "/vm/publish";

    private readonly WebApplication _app;
    private readonly string _socketPath;

    private ControlServer(WebApplication app, string socketPath)
    {
        _app = app;
        _socketPath = socketPath;
    }

    /// <summary>Listens on <paramref name="socketPath"/> (replacing a stale socket) and serves <paramref name="vm"/>.</summary>
    public static async Task<ControlServer> StartAsync(string socketPath, IVmControl vm, CancellationToken cancellation)
    {
        File.Delete(socketPath);
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ContentRootPath = Path.GetDirectoryName(socketPath) });
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = MaxRequestBodyBytes;
            kestrel.Limits.MaxRequestLineSize = 4 * 1024;
            kestrel.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
            kestrel.Limits.MaxRequestHeaderCount = 32;
            kestrel.Limits.MaxConcurrentConnections = 32;
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(10);
            kestrel.ListenUnixSocket(socketPath, listen => listen.Protocols = HttpProtocols.Http1);
        });
        // The host's default lifetime would take SIGTERM and SIGINT, which are lkrun's to turn into a shutdown.
        builder.Services.AddSingleton<IHostLifetime, NoSignalsLifetime>();
        // Registered after Kestrel's own sockets transport, so that Kestrel binds through it.
        builder.Services.AddSingleton<IConnectionListenerFactory, ControlSocketTransport>();
        var app = builder.Build();
        app.Run(context => HandleAsync(context, vm));
        await app.StartAsync(cancellation);
        File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return new ControlServer(app, socketPath);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
        File.Delete(_socketPath);
    }

    private static async Task HandleAsync(HttpContext context, IVmControl vm)
    {
        var request = context.Request;
        var path = request.Path.Value ?? "";
        var cancellation = context.RequestAborted;
        try
        {
            switch (path, request.Method)
            {
                case ("/vm/state", "GET"):
                    await ReplyAsync(context, StatusCodes.Status200OK, StateOf(vm), ControlJson.Default.VmStateReply);
                    break;
                case ("/vm/state", "POST"):
                    await ChangeStateAsync(context, vm, await ReadAsync(request, ControlJson.Default.VmStateChange, cancellation));
                    break;
                case ("/vm/inspect", "GET"):
                    await ReplyAsync(context, StatusCodes.Status200OK, vm.Inspect(), ControlJson.Default.VmInspection);
                    break;
                case (PublishPath, "GET"):
                    await ReplyAsync(context, StatusCodes.Status200OK, new PublishedPortsReply([.. vm.PublishedPorts.Select(port => port.ToString())]), ControlJson.Default.PublishedPortsReply);
                    break;
                case (PublishPath, "POST"):
                    var publish = await ReadAsync(request, ControlJson.Default.PublishRequest, cancellation);
                    var published = await vm.PublishAsync(publish.Port ?? throw new BadRequestException("expected {\"port\": \"[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]\"}"), cancellation);
                    await ReplyAsync(context, StatusCodes.Status201Created, new PublishReply(published.ToString()), ControlJson.Default.PublishReply);
                    break;
                case (_, "DELETE") when path.StartsWith(PublishPath + "/", StringComparison.Ordinal):
                    await vm.UnpublishAsync(FindPublished(vm, path[(PublishPath.Length + 1)..]), cancellation);
                    context.Response.StatusCode = StatusCodes.Status204NoContent;
                    break;
                case ("/vm/state" or "/vm/inspect" or PublishPath, _):
                    await FailAsync(context, StatusCodes.Status405MethodNotAllowed, $"{request.Method} is not allowed on {path}");
                    break;
                default:
                    await FailAsync(context, StatusCodes.Status404NotFound, $"no such resource: {path}");
                    break;
            }
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e)
        {
            // Kestrel's own limits while the body is read, such as a body over MaxRequestBodyBytes (413).
            await FailAsync(context, e.StatusCode, e.Message);
        }
        catch (BadRequestException e)
        {
            await FailAsync(context, e.StatusCode, e.Message);
        }
        catch (Exception e) when (e is IUserError)
        {
            await FailAsync(context, StatusCodes.Status400BadRequest, e.Message);
        }
        catch (NotSupportedException e)
        {
            await FailAsync(context, StatusCodes.Status501NotImplemented, e.Message);
        }
    }

    private static VmStateReply StateOf(IVmControl vm)
    {
        var state = vm.PowerState;
        var live = state is VmPowerState.Running or VmPowerState.Paused;
        return new VmStateReply(
            VfkitState(state),
            CanStart: false,
            CanPause: vm.CanPause && state == VmPowerState.Running,
            CanResume: vm.CanPause && state == VmPowerState.Paused,
            CanStop: live,
            CanHardStop: state != VmPowerState.Stopped);
    }

    /// <summary>The names vfkit gives the states (Virtualization.framework's VZVirtualMachineState).</summary>
    public static string VfkitState(VmPowerState state) => state switch
    {
        VmPowerState.Running => "VirtualMachineStateRunning",
        VmPowerState.Paused => "VirtualMachineStatePaused",
        VmPowerState.Stopping => "VirtualMachineStateStopping",
        _ => "VirtualMachineStateStopped",
    };

    private static async Task ChangeStateAsync(HttpContext context, IVmControl vm, VmStateChange change)
    {
        var cancellation = context.RequestAborted;
        TimeSpan? timeout = null;
        if (change.Timeout is { } seconds)
        {
            timeout = seconds > 0 && double.IsFinite(seconds) && seconds < TimeSpan.MaxValue.TotalSeconds
                ? TimeSpan.FromSeconds(seconds)
                : throw new BadRequestException($"timeout {seconds.ToString(CultureInfo.InvariantCulture)}: not a positive number of seconds");
        }
        if (vm.PowerState == VmPowerState.Stopped || (vm.PowerState == VmPowerState.Stopping && change.State is "Pause" or "Resume"))
        {
            throw new BadRequestException($"the VM is {(vm.PowerState == VmPowerState.Stopped ? "stopped" : "stopping")}", StatusCodes.Status409Conflict);
        }
        switch (change.State)
        {
            case "Stop":
                vm.Stop(timeout);
                break;
            case "HardStop":
                vm.StopHard();
                break;
            case "Pause" or "Resume" when !vm.CanPause:
                // CanPause alone decides, so the API never answers canPause false and then pauses the VM.
                throw new NotSupportedException("this engine cannot pause a VM");
            case "Pause":
                await vm.PauseAsync(cancellation);
                break;
            case "Resume":
                await vm.ResumeAsync(cancellation);
                break;
            default:
                throw new BadRequestException($"unknown state '{change.State}' (Stop, HardStop, Pause or Resume)");
        }
        context.Response.StatusCode = StatusCodes.Status202Accepted;
    }

    /// <summary>The published port a DELETE names: <c>[HOSTIP:]HOSTPORT[/tcp|/udp]</c>.</summary>
    private static PublishedPort FindPublished(IVmControl vm, string name)
    {
        var protocol = PortProtocol.Tcp;
        var slash = name.IndexOf('/');
        if (slash >= 0)
        {
            protocol = name[(slash + 1)..] switch
            {
                "tcp" => PortProtocol.Tcp,
                "udp" => PortProtocol.Udp,
                var other => throw new BadRequestException($"unknown protocol '{other}' (tcp or udp)"),
            };
            name = name[..slash];
        }
        IPAddress? address = null;
        var colon = name.LastIndexOf(':');
        if (colon >= 0)
        {
            address = IPAddress.TryParse(name[..colon], out var parsed) ? parsed : throw new BadRequestException($"bad host address '{name[..colon]}'");
            name = name[(colon + 1)..];
        }
        if (!int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var hostPort))
        {
            throw new BadRequestException($"'{name}' is not a port; expected /vm/publish/[HOSTIP:]HOSTPORT[/tcp|/udp]");
        }
        var matches = vm.PublishedPorts
            .Where(port => port.HostPort == hostPort && port.Protocol == protocol && (address is null || port.HostAddress.Equals(address)))
            .ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new BadRequestException($"host port {hostPort}/{protocol.ToString().ToLowerInvariant()} is not published", StatusCodes.Status404NotFound),
            _ => throw new BadRequestException($"host port {hostPort} is published on several addresses; name one (HOSTIP:{hostPort})", StatusCodes.Status409Conflict),
        };
    }

    private static async Task<T> ReadAsync<T>(HttpRequest request, JsonTypeInfo<T> type, CancellationToken cancellation)
        where T : class
    {
        try
        {
            return await JsonSerializer.DeserializeAsync(request.Body, type, cancellation)
                ?? throw new BadRequestException("expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new BadRequestException($"malformed JSON: {e.Message}");
        }
    }

    /// <summary>Answers with a JSON body of known length (no chunking), ending in a newline for the terminal of curl's user.</summary>
    private static async Task ReplyAsync<T>(HttpContext context, int status, T body, JsonTypeInfo<T> type)
    {
        byte[] json = [.. JsonSerializer.SerializeToUtf8Bytes(body, type), (byte)'\n'];
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = json.Length;
        await context.Response.Body.WriteAsync(json, context.RequestAborted);
    }

    private static Task FailAsync(HttpContext context, int status, string message) =>
        context.Response.HasStarted ? Task.CompletedTask : ReplyAsync(context, status, new ErrorReply(message), ControlJson.Default.ErrorReply);

    /// <summary>A request the API refuses, with the status to answer.</summary>
    private sealed class BadRequestException(string message, int statusCode = StatusCodes.Status400BadRequest) : Exception(message)
    {
        public int StatusCode { get; } = statusCode;
    }

    /// <summary>A host lifetime that leaves the process's signals alone.</summary>
    private sealed class NoSignalsLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
