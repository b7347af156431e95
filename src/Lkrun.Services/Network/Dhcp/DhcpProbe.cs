using System.Buffers.Binary;
using System.Net;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Dhcp;

/// <summary>
/// A DHCP discovery on behalf of a VM that has not booted yet, to learn the address a network's DHCP server will
/// give its interface (as VPNKit's Go client does before it publishes ports): a DISCOVER from the interface's MAC,
/// and the OFFER it draws. No lease is taken; the guest's own client takes it when it boots.
/// </summary>
public static class DhcpProbe
{
    private const int MessageLength = 300;

    /// <summary>A DISCOVER from <paramref name="mac"/>, broadcast from 0.0.0.0:68 to 255.255.255.255:67, asking for a unicast reply.</summary>
    public static byte[] Discover(MacAddress mac, uint transactionId)
    {
        const int headers = EthernetFrame.HeaderLength + Ipv4Packet.MinimumHeaderLength + UdpDatagram.HeaderLength;
        var frame = new byte[headers + MessageLength];
        var message = frame.AsSpan(headers);
        message[0] = DhcpMessage.BootRequest;
        message[1] = 1;
        message[2] = 6;
        BinaryPrimitives.WriteUInt32BigEndian(message[4..], transactionId);
        mac.CopyTo(message[28..]);
        BinaryPrimitives.WriteUInt32BigEndian(message[236..], DhcpMessage.MagicCookie);
        message[240] = DhcpMessage.OptionMessageType;
        message[241] = 1;
        message[242] = (byte)DhcpMessageType.Discover;
        message[243] = DhcpMessage.OptionEnd;
        EthernetFrame.WriteHeader(frame, MacAddress.Broadcast, mac, EthernetFrame.TypeIpv4);
        var ip = frame.AsSpan(EthernetFrame.HeaderLength);
        Ipv4Packet.WriteHeader(ip, Ipv4Packet.ProtocolUdp, 0, uint.MaxValue, UdpDatagram.HeaderLength + MessageLength);
        UdpDatagram.WriteHeader(ip[Ipv4Packet.MinimumHeaderLength..], 0, DhcpServer.ClientPort, uint.MaxValue, DhcpServer.ServerPort, MessageLength);
        return frame;
    }

    /// <summary>The address offered in <paramref name="frame"/>, when it is an OFFER for <paramref name="mac"/> in <paramref name="transactionId"/>.</summary>
    public static IPAddress? OfferedAddress(ReadOnlySpan<byte> frame, MacAddress mac, uint transactionId)
    {
        if (!EthernetFrame.TryParse(frame, out var ethernet) || ethernet.EtherType != EthernetFrame.TypeIpv4 ||
            !Ipv4Packet.TryParse(ethernet.Payload, out var ip) || ip.Protocol != Ipv4Packet.ProtocolUdp || ip.IsFragment ||
            !UdpDatagram.TryParse(ip.Payload, out var udp) || udp.SourcePort != DhcpServer.ServerPort || udp.DestinationPort != DhcpServer.ClientPort ||
            !DhcpMessage.TryParse(udp.Payload, out var message) || message.Operation != DhcpMessage.BootReply ||
            message.TransactionId != transactionId || message.ClientHardwareAddress != mac ||
            message.MessageType != DhcpMessageType.Offer || message.YourAddress == 0)
        {
            return null;
        }
        return Ipv4Packet.ToAddress(message.YourAddress);
    }
}
