using System.Net;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Packets;
using Lkrun.Spec;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// A DHCP message from the guest (the UDP payload): the view reads nothing outside it, every option it finds lies
/// inside it, and when the server answers, the answer is a well-formed reply to the same transaction and client.
/// </summary>
internal sealed class DhcpTarget : IFuzzTarget
{
    private static readonly IPAddress Leased = IPAddress.Parse("192.168.65.3");
    private static readonly uint Gateway = Ipv4Packet.ToUInt32(NatSubnet.Gateway);


    public IEnumerable<byte[]> Seeds()
    {
        var leased = Ipv4Packet.ToUInt32(Leased);
        yield return Wire.DhcpClientMessage(1, 0x1234abcd, 0, [55, 4, 1, 3, 6, 26]);
        yield return Wire.DhcpClientMessage(3, 0x1234abcd, 0, [50, 4, .. Wire.BigEndian(leased)], [54, 4, .. Wire.BigEndian(Gateway)]);
        yield return Wire.DhcpClientMessage(3, 0x55aa, leased);
        yield return Wire.DhcpClientMessage(8, 0x77, leased, [0, 0, 12, 5, (byte)'g', (byte)'u', (byte)'e', (byte)'s', (byte)'t']);
        yield return Wire.DhcpClientMessage(7, 0x99, leased);
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length > 1400)
        {
            return;
        }
        if (DhcpMessage.TryParse(input, out var message))
        {
            _ = (message.Operation, message.TransactionId, message.Flags, message.ClientAddress, message.YourAddress, message.RelayAddress);
            _ = (message.MessageType, message.RequestedAddress, message.ServerIdentifier);
            Check.That(message.MessageType is null or (>= DhcpMessageType.Discover and <= DhcpMessageType.Inform), "the message type is one of RFC 2132's");
            for (var code = 0; code < 256; code++)
            {
                if (message.TryGetOption((byte)code, out var value))
                {
                    Check.Inside(value, input, $"option {code}");
                }
            }
        }

        // The same bytes as the guest sends them, from the client's own MAC so that the server considers them.
        var client = input.Length >= 34 ? MacAddress.FromBytes(input.Slice(28, 6)) : Wire.GuestMac;
        var server = new DhcpServer(DhcpSettings.ForNatNetwork(1500), new SingleDhcpClient(client, Leased));
        var frame = Wire.Udp(client, MacAddress.Broadcast, 0, DhcpServer.ClientPort, 0xffff_ffff, DhcpServer.ServerPort, input);
        Check.That(server.IsAddressedToServer(frame), "a broadcast to port 67 is the server's");
        if (server.Answer(frame) is not { } reply)
        {
            return;
        }
        Check.That(message.Operation == DhcpMessage.BootRequest, "only a BOOTREQUEST is answered");
        Check.That(EthernetFrame.TryParse(reply, out var ethernet) && ethernet.EtherType == EthernetFrame.TypeIpv4, "the reply is an IPv4 frame");
        Check.That(Ipv4Packet.TryParse(ethernet.Payload, out var ip) && ip.Protocol == Ipv4Packet.ProtocolUdp, "the reply is UDP");
        Check.That(UdpDatagram.TryParse(ip.Payload, out var udp) && udp.SourcePort == DhcpServer.ServerPort && udp.DestinationPort == DhcpServer.ClientPort, "the reply goes from port 67 to 68");
        Check.That(DhcpMessage.TryParse(udp.Payload, out var answer), "the reply is a DHCP message");
        Check.That(answer.Operation == DhcpMessage.BootReply && answer.TransactionId == message.TransactionId, "the reply answers the same transaction");
        Check.That(answer.ClientHardwareAddress == client, "the reply is for the same client");
        Check.That(answer.MessageType is DhcpMessageType.Offer or DhcpMessageType.Ack or DhcpMessageType.Nak, "the reply is an offer, ack or nak");
    }
}
