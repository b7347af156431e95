using System.Net;
using System.Text.Json.Serialization;

namespace Lkrun.Spec;

[JsonConverter(typeof(JsonStringEnumConverter<NetworkMode>))]
public enum NetworkMode
{
    /// <summary>A NAT network private to the VM on 192.168.65.0/24 (linuxkit's default, also called <c>default</c>).</summary>
    [JsonStringEnumMemberName("vmnet")]
    Vmnet,

    /// <summary>No network device.</summary>
    [JsonStringEnumMemberName("none")]
    None,

    /// <summary>A vpnkit instance started for, or shared with, this VM.</summary>
    [JsonStringEnumMemberName("vpnkit")]
    Vpnkit,

    /// <summary>The vpnkit instance of Docker for Mac.</summary>
    [JsonStringEnumMemberName("docker-for-mac")]
    DockerForMac,

    /// <summary>
    /// Virtualization.framework's own NAT (<c>VZNATNetworkDeviceAttachment</c>): macOS hands out the address, and the
    /// host reaches the guest by it. lkrun runs no network of its own, so <c>-ip</c> and <c>-publish</c> do not apply.
    /// </summary>
    [JsonStringEnumMemberName("vznat")]
    VzNat,
}

[JsonConverter(typeof(JsonStringEnumConverter<PortProtocol>))]
public enum PortProtocol
{
    [JsonStringEnumMemberName("tcp")]
    Tcp,

    [JsonStringEnumMemberName("udp")]
    Udp,
}

/// <summary>A guest port exposed on the host: <c>[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]</c>.</summary>
public sealed record PublishedPort(
    [property: JsonConverter(typeof(IPAddressJsonConverter))] IPAddress HostAddress,
    int HostPort,
    int GuestPort,
    PortProtocol Protocol)
{
    /// <summary>The flag's own syntax; an IPv6 host address is bracketed, as <c>-publish</c> takes it.</summary>
    public override string ToString() =>
        $"{(HostAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{HostAddress}]" : HostAddress)}:{HostPort}:{GuestPort}/{Protocol.ToString().ToLowerInvariant()}";
}

public sealed record NetworkSpec
{
    public static readonly NetworkSpec Default = new();

    public NetworkMode Mode { get; init; } = NetworkMode.Vmnet;

    /// <summary>A fixed guest address (<c>-ip</c>); null means one is leased.</summary>
    [JsonConverter(typeof(IPAddressJsonConverter))]
    public IPAddress? FixedAddress { get; init; }

    [JsonConverter(typeof(ValueListJsonConverter<PublishedPort>))]
    public ValueList<PublishedPort> PublishedPorts { get; init; } = ValueList<PublishedPort>.Empty;
}
