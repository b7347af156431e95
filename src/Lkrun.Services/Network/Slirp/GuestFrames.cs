using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Slirp;

/// <summary>
/// The check every frame from the guest passes before libslirp parses it: only ARP and IPv4 go on (the network
/// has no IPv6), and only when their headers fit the frame, so a malformed frame is dropped here.
/// </summary>
public static class GuestFrames
{
    /// <summary>An ARP packet for IPv4 over Ethernet: 8 bytes of header, two MAC and two IPv4 addresses.</summary>
    private const int ArpLength = 28;

    public static bool IsWellFormed(ReadOnlySpan<byte> frame)
    {
        if (frame.Length > FrameLimits.MaxFrameLength || !EthernetFrame.TryParse(frame, out var ethernet))
        {
            return false;
        }
        return ethernet.EtherType switch
        {
            EthernetFrame.TypeArp => ethernet.Payload.Length >= ArpLength,
            EthernetFrame.TypeIpv4 => Ipv4Packet.TryParse(ethernet.Payload, out _),
            _ => false,
        };
    }
}
