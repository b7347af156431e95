using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Shared.Ports;

/// <summary>
/// The shared network's port protocol, lkrun's own, spoken on its port socket (a unix stream socket, mode 0600).
/// The client sends requests, each one JSON object on one line (UTF-8, ending in a line feed, at most
/// <see cref="MaxLineLength"/> bytes); the service answers each with one JSON line, in order, and keeps the
/// connection for the next. The requests:
/// <list type="bullet">
/// <item><c>{"request":"expose","protocol":"tcp","hostAddress":"127.0.0.1","hostPort":8080,"guestAddress":"192.168.65.3","guestPort":80}</c>:
/// listen on the host address and port (IPv4) and forward what arrives to the guest's port. The guest address
/// must be that of a VM attached to the network; the port is removed again when that VM's link closes.</item>
/// <item><c>{"request":"unexpose","protocol":"tcp","hostAddress":"127.0.0.1","hostPort":8080}</c>: stop listening there.</item>
/// <item><c>{"request":"list"}</c>: the ports exposed now.</item>
/// </list>
/// Answers are <c>{"ok":true}</c>, <c>{"ok":true,"ports":[{...as in expose...}]}</c> for a list, or
/// <c>{"ok":false,"error":"one line"}</c>. A line that is not one of these requests (not JSON, an unknown request
/// or field, a missing or impossible value) or that is too long is answered with an error, and the service closes
/// the connection.
/// </summary>
public static class PortControl
{
    public const int MaxLineLength = 4096;

    private static readonly PortControlJson Json = new(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    });

    /// <summary>One request line's JSON, without the line feed.</summary>
    public static string Encode(PortRequest request) => request switch
    {
        ExposeRequest expose => Serialize(new PortRequestMessage
        {
            Request = "expose",
            Protocol = Name(expose.Port.Protocol),
            HostAddress = expose.Port.HostAddress.ToString(),
            HostPort = expose.Port.HostPort,
            GuestAddress = expose.GuestAddress.ToString(),
            GuestPort = expose.Port.GuestPort,
        }),
        UnexposeRequest unexpose => Serialize(new PortRequestMessage
        {
            Request = "unexpose",
            Protocol = Name(unexpose.Protocol),
            HostAddress = unexpose.HostAddress.ToString(),
            HostPort = unexpose.HostPort,
        }),
        ListRequest => Serialize(new PortRequestMessage { Request = "list" }),
        _ => throw new ArgumentException($"no encoding for {request}", nameof(request)),
    };

    /// <summary>The request on one line, without its line feed; a <see cref="PortControlException"/> when it is not a valid one.</summary>
    public static PortRequest DecodeRequest(ReadOnlySpan<byte> line)
    {
        PortRequestMessage message;
        try
        {
            message = JsonSerializer.Deserialize(line, Json.PortRequestMessage) ?? throw new PortControlException("the request is null");
        }
        catch (JsonException e)
        {
            throw new PortControlException($"the request is not valid JSON for this protocol ({FirstLine(e.Message)})");
        }
        return message.Request switch
        {
            "expose" => new ExposeRequest(
                new PublishedPort(
                    HostAddressOf(message.HostAddress),
                    PortOf("hostPort", message.HostPort),
                    PortOf("guestPort", message.GuestPort),
                    ProtocolOf(message.Protocol)),
                AddressOf("guestAddress", message.GuestAddress)),
            "unexpose" => new UnexposeRequest(ProtocolOf(message.Protocol), HostAddressOf(message.HostAddress), PortOf("hostPort", message.HostPort)),
            "list" => new ListRequest(),
            null => throw new PortControlException("the request names no request"),
            var other => throw new PortControlException($"unknown request '{Truncate(other)}' (expose, unexpose or list)"),
        };
    }

    public static string EncodeResponse(PortResponse response) => JsonSerializer.Serialize(
        new PortResponseMessage
        {
            Ok = response.Error is null,
            Error = response.Error,
            Ports = response.Ports?.Select(port => new ExposedPortMessage
            {
                Protocol = Name(port.Port.Protocol),
                HostAddress = port.Port.HostAddress.ToString(),
                HostPort = port.Port.HostPort,
                GuestAddress = port.GuestAddress.ToString(),
                GuestPort = port.Port.GuestPort,
            }).ToList(),
        },
        Json.PortResponseMessage);

    /// <summary>The answer on one line; a <see cref="PortControlException"/> when it is not one.</summary>
    public static PortResponse DecodeResponse(ReadOnlySpan<byte> line)
    {
        PortResponseMessage message;
        try
        {
            message = JsonSerializer.Deserialize(line, Json.PortResponseMessage) ?? throw new PortControlException("the answer is null");
        }
        catch (JsonException e)
        {
            throw new PortControlException($"the answer is not this protocol's ({FirstLine(e.Message)})");
        }
        if (message.Ok is not { } ok || ok == (message.Error is not null))
        {
            throw new PortControlException("the answer says neither ok nor an error");
        }
        var ports = message.Ports?.Select(port => new ExposedPort(
            new PublishedPort(HostAddressOf(port.HostAddress), PortOf("hostPort", port.HostPort), PortOf("guestPort", port.GuestPort), ProtocolOf(port.Protocol)),
            AddressOf("guestAddress", port.GuestAddress))).ToList();
        return new PortResponse(message.Error, ports);
    }

    public static string Name(PortProtocol protocol) => protocol == PortProtocol.Udp ? "udp" : "tcp";

    private static string Serialize(PortRequestMessage message) => JsonSerializer.Serialize(message, Json.PortRequestMessage);

    private static PortProtocol ProtocolOf(string? name) => name switch
    {
        "tcp" => PortProtocol.Tcp,
        "udp" => PortProtocol.Udp,
        null => throw new PortControlException("protocol is missing (tcp or udp)"),
        _ => throw new PortControlException($"unknown protocol '{Truncate(name)}' (tcp or udp)"),
    };

    private static int PortOf(string field, int? port) => port switch
    {
        null => throw new PortControlException($"{field} is missing"),
        < 1 or > 65535 => throw new PortControlException($"{field} {port.Value.ToString(CultureInfo.InvariantCulture)} is not a port from 1 to 65535"),
        _ => port.Value,
    };

    private static IPAddress HostAddressOf(string? text) => AddressOf("hostAddress", text);

    private static IPAddress AddressOf(string field, string? text)
    {
        if (text is null)
        {
            throw new PortControlException($"{field} is missing");
        }
        if (!IPAddress.TryParse(text, out var address) || address.AddressFamily != AddressFamily.InterNetwork || text.Count(c => c == '.') != 3)
        {
            throw new PortControlException($"{field} '{Truncate(text)}' is not an IPv4 address");
        }
        return address;
    }

    private static string FirstLine(string text) => text.Split('\n')[0].TrimEnd('.');

    private static string Truncate(string text) => text.Length <= 64 ? text : text[..64] + "...";
}

/// <summary>A request on the port socket.</summary>
public abstract record PortRequest;

/// <summary>Forward <see cref="PublishedPort.HostAddress"/>:<see cref="PublishedPort.HostPort"/> to <paramref name="GuestAddress"/>:<see cref="PublishedPort.GuestPort"/>.</summary>
public sealed record ExposeRequest(PublishedPort Port, IPAddress GuestAddress) : PortRequest;

public sealed record UnexposeRequest(PortProtocol Protocol, IPAddress HostAddress, int HostPort) : PortRequest;

public sealed record ListRequest : PortRequest;

/// <summary>A port the network forwards: the host side and guest port, and the guest's address.</summary>
public sealed record ExposedPort(PublishedPort Port, IPAddress GuestAddress)
{
    public override string ToString() =>
        $"{PortControl.Name(Port.Protocol)} {Port.HostAddress}:{Port.HostPort} -> {GuestAddress}:{Port.GuestPort}";
}

/// <summary>The service's answer: an error (one line), or success with the ports for a list.</summary>
public sealed record PortResponse(string? Error, IReadOnlyList<ExposedPort>? Ports = null)
{
    public static readonly PortResponse Ok = new((string?)null);
}

/// <summary>A request or answer that is not this protocol's. The message is one line.</summary>
public sealed class PortControlException(string message) : Exception(message);

internal sealed class PortRequestMessage
{
    public string? Request { get; init; }
    public string? Protocol { get; init; }
    public string? HostAddress { get; init; }
    public int? HostPort { get; init; }
    public string? GuestAddress { get; init; }
    public int? GuestPort { get; init; }
}

internal sealed class PortResponseMessage
{
    public bool? Ok { get; init; }
    public string? Error { get; init; }
    public List<ExposedPortMessage>? Ports { get; init; }
}

internal sealed class ExposedPortMessage
{
    public string? Protocol { get; init; }
    public string? HostAddress { get; init; }
    public int? HostPort { get; init; }
    public string? GuestAddress { get; init; }
    public int? GuestPort { get; init; }
}

[JsonSerializable(typeof(PortRequestMessage))]
[JsonSerializable(typeof(PortResponseMessage))]
internal sealed partial class PortControlJson : JsonSerializerContext;
