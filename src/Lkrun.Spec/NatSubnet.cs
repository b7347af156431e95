using System.Net;

namespace Lkrun.Spec;

/// <summary>
/// The address plan of the NAT network (the default, vmnet, mode), as linuxkit documents it: 192.168.65.0/24 with
/// the gateway at .1 and .2 reserved for the Docker for Mac VM. The DNS server sits at .254, an address that is
/// never leased. Only addresses and sizes: the network itself is <c>Lkrun.Services.Network.NatNetwork</c>.
/// </summary>
public static class NatSubnet
{
    public static readonly IPAddress Network = IPAddress.Parse("192.168.65.0");
    public const int PrefixLength = 24;
    public static readonly IPAddress Netmask = IPAddress.Parse("255.255.255.0");
    public static readonly IPAddress Gateway = IPAddress.Parse("192.168.65.1");
    public static readonly IPAddress Reserved = IPAddress.Parse("192.168.65.2");
    public static readonly IPAddress Dns = IPAddress.Parse("192.168.65.254");
    public static readonly IPAddress Broadcast = IPAddress.Parse("192.168.65.255");

    /// <summary>
    /// The interface MTU: as large as an IPv4 packet in one frame can be (passt's choice too), so that a TCP segment
    /// carries 64 KiB and bulk transfers cost few frames, which matters most when the guest is emulated.
    /// </summary>
    public const int Mtu = 65520;

    /// <summary>The first and last host numbers (last octet) handed out to VMs.</summary>
    public const int FirstLeasedHost = 3;
    public const int LastLeasedHost = 253;

    public static IPAddress HostAddress(int host)
    {
        var bytes = Network.GetAddressBytes();
        bytes[3] = (byte)host;
        return new IPAddress(bytes);
    }

    /// <summary>The last octet when <paramref name="address"/> is inside the subnet, else null.</summary>
    public static int? HostNumberOf(IPAddress address)
    {
        var bytes = address.GetAddressBytes();
        return bytes.Length == 4 && bytes.AsSpan(0, 3).SequenceEqual(Network.GetAddressBytes().AsSpan(0, 3)) ? bytes[3] : null;
    }

    /// <summary>Why <paramref name="address"/> cannot be a guest's fixed address, or null when it can.</summary>
    public static string? WhyNotAssignable(IPAddress address) => address switch
    {
        _ when HostNumberOf(address) is null => $"{address} is outside {Network}/{PrefixLength}",
        _ when address.Equals(Network) => $"{address} is the network address",
        _ when address.Equals(Gateway) => $"{address} is the gateway",
        _ when address.Equals(Reserved) => $"{address} is reserved",
        _ when address.Equals(Dns) => $"{address} is the DNS server",
        _ when address.Equals(Broadcast) => $"{address} is the broadcast address",
        _ => null,
    };
}
