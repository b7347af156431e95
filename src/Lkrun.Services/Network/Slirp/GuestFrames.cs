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

    /// <summary>
    /// An IPv4 fragment. libslirp 4.7 writes through a wild pointer when it reassembles fragments that arrive out
    /// of order or overlap, which a guest controls, so no fragment reaches it: fragmented datagrams are dropped.
    /// Guests on lkrun's MTU of 65,520 bytes fragment nothing but UDP datagrams larger than that.
    /// </summary>
    Fragment,

    /// <summary>Lengths that do not fit: too short or too long for Ethernet, or an ARP or IPv4 header cut short or lying.</summary>
    Malformed,
}

/// <summary>
/// The check every frame from the guest passes before libslirp parses it: only ARP and whole IPv4 packets go on
/// (the network has no IPv6, and libslirp cannot be trusted with fragments: <see cref="GuestFrameKind.Fragment"/>),
/// and only when their headers fit the frame, so a malformed frame is dropped here.
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
            case EthernetFrame.TypeArp:
                return GuestFrameKind.WellFormed;
            case EthernetFrame.TypeIpv4:
                return ClassifyIpv4(ethernet.Payload, out problem);
            default:
                return GuestFrameKind.NotCarried;
        }
    }

    private static GuestFrameKind ClassifyIpv4(ReadOnlySpan<byte> bytes, out string? problem)
    {
        problem = null;
        if (!Ipv4Packet.TryParse(bytes, out var ip))
        {
            problem = $"an IPv4 packet whose header does not fit its {bytes.Length} bytes";
            return GuestFrameKind.Malformed;
        }
        return ip.IsFragment ? GuestFrameKind.Fragment : GuestFrameKind.WellFormed;
    }
}
