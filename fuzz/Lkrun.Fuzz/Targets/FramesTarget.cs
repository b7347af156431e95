using System.Buffers.Binary;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Slirp;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// An Ethernet frame from the guest through the Ethernet, IPv4 and UDP views and the check before libslirp: every
/// payload lies inside the frame and agrees with the length fields, the gate passes exactly ARP and sound IPv4, and
/// headers rewritten with lkrun's writers read back the same.
/// </summary>
internal sealed class FramesTarget : IFuzzTarget
{

    public IEnumerable<byte[]> Seeds()
    {
        yield return Wire.Udp(Wire.GuestMac, MacAddress.Broadcast, 0, 68, 0xffff_ffff, 67, Wire.DhcpClientMessage(1, 1));
        yield return Wire.Udp(Wire.GuestMac, MacAddress.Broadcast, 0xc0a8_4103, 5353, 0xc0a8_4101, 53, [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        var arp = new byte[42];
        EthernetFrame.WriteHeader(arp, MacAddress.Broadcast, Wire.GuestMac, EthernetFrame.TypeArp);
        new byte[] { 0, 1, 8, 0, 6, 4, 0, 1 }.CopyTo(arp, 14);
        yield return arp;
        var tcp = Wire.Udp(Wire.GuestMac, MacAddress.Broadcast, 0xc0a8_4103, 40000, 0xc0a8_4101, 80, new byte[12]);
        tcp[14 + 9] = 6;
        yield return tcp;
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        var wellFormed = GuestFrames.IsWellFormed(input);
        if (!EthernetFrame.TryParse(input, out var ethernet))
        {
            Check.That(input.Length < EthernetFrame.HeaderLength && !wellFormed, "only a frame shorter than its header is refused");
            return;
        }
        Check.That(ethernet.Payload.Length == input.Length - EthernetFrame.HeaderLength, "the Ethernet payload is the rest of the frame");
        Check.Inside(ethernet.Payload, input, "the Ethernet payload");
        _ = (ethernet.Destination, ethernet.Source);

        var ipv4 = Ipv4Packet.TryParse(ethernet.Payload, out var ip);
        var expected = input.Length <= FrameLimits.MaxFrameLength && ethernet.EtherType switch
        {
            EthernetFrame.TypeArp => ethernet.Payload.Length >= 28,
            EthernetFrame.TypeIpv4 => ipv4 && !ip.IsFragment,
            _ => false,
        };
        Check.That(wellFormed == expected, "the gate before libslirp passes exactly ARP and whole IPv4 packets whose headers fit");
        if (!ipv4)
        {
            return;
        }
        var header = ethernet.Payload;
        var headerLength = (header[0] & 0x0f) * 4;
        var totalLength = BinaryPrimitives.ReadUInt16BigEndian(header[2..]);
        Check.That(headerLength >= Ipv4Packet.MinimumHeaderLength && totalLength >= headerLength && totalLength <= header.Length, "IPv4 lengths agree");
        Check.That(ip.Payload.Length == totalLength - headerLength, "the IPv4 payload ends where the total length says");
        Check.Inside(ip.Payload, ethernet.Payload, "the IPv4 payload");
        _ = (ip.Protocol, ip.IsFragment, ip.Source, ip.Destination);

        var udpOk = UdpDatagram.TryParse(ip.Payload, out var udp);
        if (!udpOk)
        {
            return;
        }
        Check.That(udp.Payload.Length == BinaryPrimitives.ReadUInt16BigEndian(ip.Payload[4..]) - UdpDatagram.HeaderLength, "the UDP payload ends where its length says");
        Check.Inside(udp.Payload, ip.Payload, "the UDP payload");

        // Rewritten with lkrun's writers, the same addresses, ports and payload read back.
        var rebuilt = Wire.Udp(ethernet.Source, ethernet.Destination, ip.Source, udp.SourcePort, ip.Destination, udp.DestinationPort, udp.Payload);
        Check.That(EthernetFrame.TryParse(rebuilt, out var again) && again.Source == ethernet.Source && again.Destination == ethernet.Destination, "Ethernet round trip");
        Check.That(Ipv4Packet.TryParse(again.Payload, out var ip2) && ip2.Source == ip.Source && ip2.Destination == ip.Destination && !ip2.IsFragment, "IPv4 round trip");
        Check.That(InternetChecksum.Complete(InternetChecksum.Add(0, again.Payload[..Ipv4Packet.MinimumHeaderLength])) == 0, "the written IPv4 checksum holds");
        Check.That(UdpDatagram.TryParse(ip2.Payload, out var udp2) && udp2.SourcePort == udp.SourcePort && udp2.DestinationPort == udp.DestinationPort && udp2.Payload.SequenceEqual(udp.Payload), "UDP round trip");
        Check.That(GuestFrames.IsWellFormed(rebuilt) == (rebuilt.Length <= FrameLimits.MaxFrameLength), "a rebuilt frame passes the gate");
    }
}
