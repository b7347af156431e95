using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Slirp;

/// <summary>What the NAT network makes of a frame from the guest.</summary>
public enum GuestFrameKind
{
    /// <summary>ARP or IPv4 whose headers fit the frame: it may go on to libslirp.</summary>
    WellFormed,

    /// <summary>A well-formed frame of a type the network does not carry (IPv6, VLAN tags): dropped, as no stack takes it.</summary>
    NotCarried,

    /// <summary>Lengths that do not fit: too short or too long for Ethernet, or an ARP or IPv4 header cut short or lying.</summary>
    Malformed,
}

/// <summary>
/// The check every frame from the guest passes before libslirp parses it: only ARP and IPv4 go on (the network
/// has no IPv6), and only when their headers fit the frame, so a malformed frame is dropped here.
/// </summary>
public static class GuestFrames
{
    /// <summary>An ARP packet for IPv4 over Ethernet: 8 bytes of header, two MAC and two IPv4 addresses.</summary>
    private const int ArpLength = 28;

    public static bool IsWellFormed(ReadOnlySpan<byte> frame) => Classify(frame, out _) == GuestFrameKind.WellFormed;

    /// <summary>Sorts <paramref name="frame"/>; for a malformed one <paramref name="problem"/> says what is wrong, in a few words.</summary>
    public static GuestFrameKind Classify(ReadOnlySpan<byte> frame, out string? problem)
    {
        problem = null;
        if (frame.Length > FrameLimits.MaxFrameLength || !EthernetFrame.TryParse(frame, out var ethernet))
        {
            problem = $"an Ethernet frame of {frame.Length} bytes";
            return GuestFrameKind.Malformed;
        }
        switch (ethernet.EtherType)
        {
            case EthernetFrame.TypeArp when ethernet.Payload.Length < ArpLength:
                problem = $"an ARP packet of {ethernet.Payload.Length} bytes";
                return GuestFrameKind.Malformed;
            case EthernetFrame.TypeIpv4 when !Ipv4Packet.TryParse(ethernet.Payload, out _):
                problem = $"an IPv4 packet whose header does not fit its {ethernet.Payload.Length} bytes";
                return GuestFrameKind.Malformed;
            case EthernetFrame.TypeArp or EthernetFrame.TypeIpv4:
                return GuestFrameKind.WellFormed;
            default:
                return GuestFrameKind.NotCarried;
        }
    }
}
