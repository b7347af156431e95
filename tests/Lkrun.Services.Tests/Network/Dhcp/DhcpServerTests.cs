using System.Buffers.Binary;
using System.Net;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Slirp;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network.Dhcp;

public sealed class DhcpServerTests
{
    private static readonly IPAddress Other = IPAddress.Parse("192.168.65.9");
    private static readonly IPAddress OtherServer = IPAddress.Parse("192.168.65.77");

    private readonly DhcpServer _server = new(DhcpSettings.ForNatNetwork(GuestMac, Leased, 65520));

    /// <summary>A reply frame as the guest receives it, with the fields the tests look at.</summary>
    private sealed record Reply(
        MacAddress EthernetDestination, MacAddress EthernetSource, IPAddress IpSource, IPAddress IpDestination,
        ushort SourcePort, ushort DestinationPort, DhcpMessageType? Type, uint Xid, ushort Flags, IPAddress ClientAddress,
        IPAddress YourAddress, MacAddress ClientMac, Dictionary<byte, byte[]> Options, int MessageLength);

    private static Reply Parse(byte[]? frame)
    {
        Assert.NotNull(frame);
        Assert.True(EthernetFrame.TryParse(frame, out var ethernet));
        Assert.Equal(EthernetFrame.TypeIpv4, ethernet.EtherType);
        Assert.Equal(0xffff, OnesComplementSum(frame.AsSpan(14, 20)));
        Assert.True(UdpChecksumHolds(frame));
        Assert.True(Ipv4Packet.TryParse(ethernet.Payload, out var ip));
        Assert.Equal(17, ip.Protocol);
        Assert.True(UdpDatagram.TryParse(ip.Payload, out var udp));
        Assert.True(DhcpMessage.TryParse(udp.Payload, out var dhcp));
        Assert.Equal(DhcpMessage.BootReply, dhcp.Operation);
        var options = new Dictionary<byte, byte[]>();
        foreach (byte code in (byte[])[1, 3, 6, 26, 50, 51, 53, 54, 56])
        {
            if (dhcp.TryGetOption(code, out var value))
            {
                options[code] = value.ToArray();
            }
        }
        return new Reply(
            ethernet.Destination, ethernet.Source, Ipv4Packet.ToAddress(ip.Source), Ipv4Packet.ToAddress(ip.Destination),
            udp.SourcePort, udp.DestinationPort, dhcp.MessageType, dhcp.TransactionId, dhcp.Flags,
            Ipv4Packet.ToAddress(dhcp.ClientAddress), Ipv4Packet.ToAddress(dhcp.YourAddress), dhcp.ClientHardwareAddress,
            options, udp.Payload.Length);
    }

    private static DhcpOptions Discover => new(1);

    private static DhcpOptions Request => new(3);

    [Fact]
    public void A_discover_is_offered_the_leased_address_with_the_networks_settings()
    {
        var offer = Parse(_server.Answer(ClientDhcp(Discover, xid: 0xfeedbeef)));
        Assert.Equal(DhcpMessageType.Offer, offer.Type);
        Assert.Equal(0xfeedbeefu, offer.Xid);
        Assert.Equal(Leased, offer.YourAddress);
        Assert.Equal(IPAddress.Any, offer.ClientAddress);
        Assert.Equal(GuestMac, offer.ClientMac);
        Assert.Equal(SlirpStack.GatewayMac, offer.EthernetSource);
        Assert.Equal(Gateway, offer.IpSource);
        Assert.Equal((67, 68), (offer.SourcePort, offer.DestinationPort));
        Assert.Equal(Gateway.GetAddressBytes(), offer.Options[54]);
        Assert.Equal(new byte[] { 255, 255, 255, 0 }, offer.Options[1]);
        Assert.Equal(Gateway.GetAddressBytes(), offer.Options[3]);
        Assert.Equal(IPAddress.Parse("192.168.65.254").GetAddressBytes(), offer.Options[6]);
        Assert.Equal(new byte[] { 0xff, 0xf0 }, offer.Options[26]);
        Assert.Equal(86400u, BinaryPrimitives.ReadUInt32BigEndian(offer.Options[51]));
        Assert.True(offer.MessageLength >= 300);
        // Without the broadcast flag the offer goes to the offered address at the client's MAC.
        Assert.Equal(Leased, offer.IpDestination);
        Assert.Equal(GuestMac, offer.EthernetDestination);
    }

    [Fact]
    public void A_client_asking_for_broadcast_replies_gets_them()
    {
        var offer = Parse(_server.Answer(ClientDhcp(Discover, broadcast: true)));
        Assert.Equal(IPAddress.Broadcast, offer.IpDestination);
        Assert.Equal(MacAddress.Broadcast, offer.EthernetDestination);
        Assert.Equal(DhcpMessage.BroadcastFlag, offer.Flags);
    }

    [Fact]
    public void A_discover_asking_for_another_address_is_still_offered_the_leased_one()
    {
        var offer = Parse(_server.Answer(ClientDhcp(Discover with { Requested = Other })));
        Assert.Equal(DhcpMessageType.Offer, offer.Type);
        Assert.Equal(Leased, offer.YourAddress);
    }

    [Fact]
    public void Selecting_this_servers_offer_of_the_leased_address_is_acked()
    {
        var ack = Parse(_server.Answer(ClientDhcp(Request with { Requested = Leased, Server = Gateway })));
        Assert.Equal(DhcpMessageType.Ack, ack.Type);
        Assert.Equal(Leased, ack.YourAddress);
        Assert.Equal(86400u, BinaryPrimitives.ReadUInt32BigEndian(ack.Options[51]));
        Assert.Equal(new byte[] { 0xff, 0xf0 }, ack.Options[26]);
    }

    [Fact]
    public void Selecting_this_server_for_another_address_is_naked_by_broadcast()
    {
        var nak = Parse(_server.Answer(ClientDhcp(Request with { Requested = Other, Server = Gateway })));
        Assert.Equal(DhcpMessageType.Nak, nak.Type);
        Assert.Equal(IPAddress.Any, nak.YourAddress);
        Assert.Equal(IPAddress.Broadcast, nak.IpDestination);
        Assert.Equal(MacAddress.Broadcast, nak.EthernetDestination);
        Assert.Equal(Gateway.GetAddressBytes(), nak.Options[54]);
        Assert.False(nak.Options.ContainsKey(51));
        Assert.False(nak.Options.ContainsKey(3));
    }

    [Fact]
    public void Selecting_another_server_is_left_to_that_server()
    {
        Assert.Null(_server.Answer(ClientDhcp(Request with { Requested = Other, Server = OtherServer })));
        Assert.Null(_server.Answer(ClientDhcp(Request with { Requested = Leased, Server = OtherServer })));
    }

    [Fact]
    public void Rebooting_with_the_leased_address_remembered_is_acked()
    {
        var ack = Parse(_server.Answer(ClientDhcp(Request with { Requested = Leased })));
        Assert.Equal(DhcpMessageType.Ack, ack.Type);
        Assert.Equal(Leased, ack.YourAddress);
    }

    [Fact]
    public void Rebooting_with_another_address_remembered_is_naked()
    {
        var nak = Parse(_server.Answer(ClientDhcp(Request with { Requested = Other })));
        Assert.Equal(DhcpMessageType.Nak, nak.Type);
        Assert.Equal(IPAddress.Broadcast, nak.IpDestination);
    }

    [Fact]
    public void Renewing_the_leased_address_is_acked_to_the_client_address()
    {
        var ack = Parse(_server.Answer(ClientDhcp(Request, clientAddress: Leased, destination: Gateway)));
        Assert.Equal(DhcpMessageType.Ack, ack.Type);
        Assert.Equal(Leased, ack.ClientAddress);
        Assert.Equal(Leased, ack.YourAddress);
        Assert.Equal(Leased, ack.IpDestination);
        Assert.Equal(GuestMac, ack.EthernetDestination);
    }

    [Fact]
    public void Renewing_or_rebinding_another_address_is_naked()
    {
        Assert.Equal(DhcpMessageType.Nak, Parse(_server.Answer(ClientDhcp(Request, clientAddress: Other, destination: Gateway))).Type);
        Assert.Equal(DhcpMessageType.Nak, Parse(_server.Answer(ClientDhcp(Request, clientAddress: Other))).Type);
    }

    [Fact]
    public void A_request_naming_the_lease_and_another_address_is_naked()
    {
        Assert.Equal(DhcpMessageType.Nak, Parse(_server.Answer(ClientDhcp(Request with { Requested = Other }, clientAddress: Leased, destination: Gateway))).Type);
        Assert.Equal(DhcpMessageType.Nak, Parse(_server.Answer(ClientDhcp(Request with { Requested = Leased }, clientAddress: Other))).Type);
        Assert.Equal(DhcpMessageType.Nak, Parse(_server.Answer(ClientDhcp(Request with { Requested = Leased, Server = Gateway }, clientAddress: Other))).Type);
        Assert.Equal(DhcpMessageType.Ack, Parse(_server.Answer(ClientDhcp(Request with { Requested = Leased }, clientAddress: Leased))).Type);
    }

    [Fact]
    public void A_request_naming_no_address_at_all_is_ignored()
    {
        Assert.Null(_server.Answer(ClientDhcp(Request)));
        Assert.Null(_server.Answer(ClientDhcp(Request with { Server = Gateway })));
    }

    [Fact]
    public void Inform_gets_the_settings_without_a_lease()
    {
        var ack = Parse(_server.Answer(ClientDhcp(new DhcpOptions(8), clientAddress: Leased)));
        Assert.Equal(DhcpMessageType.Ack, ack.Type);
        Assert.Equal(IPAddress.Any, ack.YourAddress);
        Assert.Equal(Leased, ack.IpDestination);
        Assert.False(ack.Options.ContainsKey(51));
        Assert.Equal(Gateway.GetAddressBytes(), ack.Options[3]);
        Assert.Null(_server.Answer(ClientDhcp(new DhcpOptions(8))));
    }

    [Theory]
    [InlineData(4)] // decline
    [InlineData(7)] // release
    [InlineData(2)] // an offer, from a server in the guest
    [InlineData(5)]
    [InlineData(6)]
    public void Other_messages_change_nothing_and_get_no_answer(byte type)
    {
        Assert.Null(_server.Answer(ClientDhcp(new DhcpOptions(type) { Requested = Leased, Server = Gateway }, clientAddress: Leased)));
        Assert.Equal(Leased, Parse(_server.Answer(ClientDhcp(Discover))).YourAddress);
    }

    [Fact]
    public void Only_the_vms_own_interface_is_served()
    {
        var stranger = MacAddress.FromBytes([0x02, 0, 0, 0, 0, 0x99]);
        var discover = ClientDhcp(Discover, mac: stranger);
        Assert.True(_server.IsAddressedToServer(discover));
        Assert.Null(_server.Answer(discover));
        Assert.Null(_server.Answer(ClientDhcp(Request with { Requested = Leased }, mac: stranger)));
    }

    [Fact]
    public void Relayed_messages_are_not_answered()
    {
        Assert.Null(_server.Answer(ClientDhcp(Discover, relay: IPAddress.Parse("10.0.0.1"))));
    }

    [Fact]
    public void Dhcp_to_this_server_or_a_broadcast_address_is_the_servers()
    {
        Assert.True(_server.IsAddressedToServer(ClientDhcp(Discover)));
        Assert.True(_server.IsAddressedToServer(ClientDhcp(Discover, destination: Gateway)));
        Assert.True(_server.IsAddressedToServer(ClientDhcp(Discover, destination: IPAddress.Parse("192.168.65.255"))));
        // DHCP to a server elsewhere is ordinary traffic for the NAT; so is UDP to other ports.
        Assert.False(_server.IsAddressedToServer(ClientDhcp(Discover, destination: IPAddress.Parse("10.1.1.1"))));
        Assert.False(_server.IsAddressedToServer(ClientDhcp(Discover, destinationPort: 68)));
        Assert.False(_server.IsAddressedToServer(ArpRequest(Leased, Gateway)));
        Assert.False(_server.IsAddressedToServer(Ipv4OverEthernet(6, ClientDhcp(Discover).AsSpan(34).ToArray())));
    }

    [Fact]
    public void A_fragment_is_never_taken_for_dhcp()
    {
        var frame = ClientDhcp(Discover);
        frame[14 + 6] = 0x20;
        Assert.False(_server.IsAddressedToServer(frame));
        Assert.Null(_server.Answer(frame));
    }

    [Fact]
    public void Malformed_dhcp_gets_no_answer()
    {
        var frame = ClientDhcp(Discover);
        var cookie = (byte[])frame.Clone();
        cookie[14 + 20 + 8 + 236] ^= 1;
        var reply = (byte[])frame.Clone();
        reply[14 + 20 + 8] = 2;
        var hardware = (byte[])frame.Clone();
        hardware[14 + 20 + 8 + 2] = 16;
        foreach (var bad in new[] { cookie, reply, hardware, frame.AsSpan(0, 14 + 20 + 8 + 239).ToArray(), frame.AsSpan(0, 30).ToArray() })
        {
            Assert.Null(_server.Answer(bad));
        }
        Assert.Null(_server.Answer(ClientDhcp(Discover with { Extra = [61, 200, 1] })));
    }

    /// <summary>Any corruption of a valid message - a cut, a changed byte - is answered or ignored, never thrown on.</summary>
    [Property(MaxTest = 2000)]
    public Property Corrupted_messages_never_throw()
    {
        var valid = new[]
        {
            ClientDhcp(Discover), ClientDhcp(Request with { Requested = Leased, Server = Gateway }), ClientDhcp(Request, clientAddress: Leased),
            ClientDhcp(Request with { Requested = Other }), ClientDhcp(new DhcpOptions(8), clientAddress: Leased),
        };
        var cases = from index in Gen.Choose(0, valid.Length - 1)
                    from cut in Gen.Choose(0, valid[index].Length)
                    from changes in Gen.ListOf(Gen.Zip(Gen.Choose(0, valid[index].Length - 1), ArbMap.Default.GeneratorFor<byte>()))
                    select (index, cut, changes);
        return Prop.ForAll(Arb.From(cases), c =>
        {
            var frame = (byte[])valid[c.index].Clone();
            foreach (var (offset, value) in c.changes)
            {
                frame[offset] = value;
            }
            var reply = _server.Answer(frame.AsSpan(0, c.cut));
            if (reply is not null)
            {
                var parsed = Parse(reply);
                Assert.Contains(parsed.Type, new DhcpMessageType?[] { DhcpMessageType.Offer, DhcpMessageType.Ack, DhcpMessageType.Nak });
                Assert.True(parsed.YourAddress.Equals(Leased) || parsed.YourAddress.Equals(IPAddress.Any));
            }
        });
    }

    [Fact]
    public void A_whole_exchange_ends_on_the_leased_address_whatever_the_client_asked_for()
    {
        var offer = Parse(_server.Answer(ClientDhcp(Discover with { Requested = Other }, xid: 7)));
        var ack = Parse(_server.Answer(ClientDhcp(Request with { Requested = offer.YourAddress, Server = new IPAddress(offer.Options[54]) }, xid: 7)));
        Assert.Equal(DhcpMessageType.Ack, ack.Type);
        Assert.Equal(Leased, ack.YourAddress);
        Assert.Equal(7u, ack.Xid);
    }

    private static byte[] Ipv4OverEthernet(byte protocol, byte[] payload) =>
        Ethernet(GuestMac, MacAddress.Broadcast, 0x0800, Ipv4(protocol, IPAddress.Any, IPAddress.Broadcast, payload));
}
