using System.Net;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Slirp;

namespace Lkrun.Services.Tests.Network.Packets;

public sealed class PacketViewTests
{
    private static readonly IPAddress Source = IPAddress.Parse("192.168.65.3");
    private static readonly IPAddress Destination = IPAddress.Parse("192.168.65.1");

    [Fact]
    public void An_ethernet_frame_shows_its_addresses_type_and_payload()
    {
        var frame = TestFrames.Ethernet(TestFrames.GuestMac, MacAddress.Broadcast, 0x0806, [1, 2, 3]);
        Assert.True(EthernetFrame.TryParse(frame, out var ethernet));
        Assert.Equal(MacAddress.Broadcast, ethernet.Destination);
        Assert.Equal(TestFrames.GuestMac, ethernet.Source);
        Assert.Equal(EthernetFrame.TypeArp, ethernet.EtherType);
        Assert.Equal([1, 2, 3], ethernet.Payload.ToArray());
        Assert.False(EthernetFrame.TryParse(frame.AsSpan(0, 13), out _));
    }

    [Fact]
    public void The_ipv4_header_checksum_matches_a_known_header()
    {
        // The worked example of the IPv4 header checksum on Wikipedia's "Internet checksum" page: B861.
        Span<byte> header = stackalloc byte[20];
        Ipv4Packet.WriteHeader(header, 17, Ipv4Packet.ToUInt32(IPAddress.Parse("192.168.0.1")), Ipv4Packet.ToUInt32(IPAddress.Parse("192.168.0.199")), 0x73 - 20);
        header[6] = 0x40; // the example sets don't-fragment, which changes the sum: recompute with it
        header[10] = header[11] = 0;
        var checksum = InternetChecksum.Complete(InternetChecksum.Add(0, header));
        Assert.Equal(0xb861, checksum);
    }

    [Fact]
    public void An_ipv4_packet_is_cut_to_its_total_length_and_its_fields_read_back()
    {
        byte[] frame = [.. TestFrames.Ipv4(17, Source, Destination, [9, 8, 7]), 0, 0, 0, 0];
        Assert.True(Ipv4Packet.TryParse(frame, out var packet));
        Assert.Equal(17, packet.Protocol);
        Assert.Equal(Ipv4Packet.ToUInt32(Source), packet.Source);
        Assert.Equal(Ipv4Packet.ToUInt32(Destination), packet.Destination);
        Assert.Equal([9, 8, 7], packet.Payload.ToArray());
        Assert.False(packet.IsFragment);
        Assert.Equal(Source, Ipv4Packet.ToAddress(packet.Source));
    }

    [Theory]
    [InlineData(0, 0x44)] // header length 16
    [InlineData(0, 0x65)] // version 6
    [InlineData(0, 0x4f)] // header length 60, longer than the packet
    [InlineData(3, 19)] // total length shorter than the header
    [InlineData(3, 60)] // total length longer than the bytes
    public void An_ipv4_header_whose_lengths_disagree_is_refused(int offset, byte value)
    {
        var packet = TestFrames.Ipv4(17, Source, Destination, new byte[16]);
        packet[offset] = value;
        Assert.False(Ipv4Packet.TryParse(packet, out _));
        Assert.False(Ipv4Packet.TryParse(packet.AsSpan(0, 19), out _));
    }

    [Theory]
    [InlineData(0x20, 0x00, true)] // more fragments
    [InlineData(0x00, 0x01, true)] // an offset
    [InlineData(0x40, 0x00, false)] // don't fragment
    public void Fragments_are_recognised(byte high, byte low, bool fragment)
    {
        var packet = TestFrames.Ipv4(17, Source, Destination, new byte[8]);
        packet[6] = high;
        packet[7] = low;
        Assert.True(Ipv4Packet.TryParse(packet, out var parsed));
        Assert.Equal(fragment, parsed.IsFragment);
    }

    [Fact]
    public void A_udp_datagram_ends_where_its_length_says()
    {
        byte[] datagram = [0x00, 0x44, 0x00, 0x43, 0x00, 0x0a, 0, 0, 5, 6, 7, 7];
        Assert.True(UdpDatagram.TryParse(datagram, out var udp));
        Assert.Equal(68, udp.SourcePort);
        Assert.Equal(67, udp.DestinationPort);
        Assert.Equal([5, 6], udp.Payload.ToArray());
        datagram[5] = 7;
        Assert.False(UdpDatagram.TryParse(datagram, out _));
        datagram[5] = 13;
        Assert.False(UdpDatagram.TryParse(datagram, out _));
        Assert.False(UdpDatagram.TryParse(datagram.AsSpan(0, 7), out _));
    }

    [Property(MaxTest = 200)]
    public void Written_headers_read_back_with_checksums_that_verify(uint source, uint target, ushort sourcePort, ushort targetPort, NonNull<byte[]> data)
    {
        var payload = data.Get;
        var length = 20 + 8 + payload.Length;
        if (length > ushort.MaxValue)
        {
            return;
        }
        var packet = new byte[length];
        payload.CopyTo(packet, 28);
        Ipv4Packet.WriteHeader(packet, Ipv4Packet.ProtocolUdp, source, target, 8 + payload.Length);
        UdpDatagram.WriteHeader(packet.AsSpan(20), source, sourcePort, target, targetPort, payload.Length);
        Assert.Equal(0xffff, TestFrames.OnesComplementSum(packet.AsSpan(0, 20)));
        Assert.True(TestFrames.UdpChecksumHolds([.. new byte[14], .. packet]));
        Assert.True(Ipv4Packet.TryParse(packet, out var ip));
        Assert.Equal(source, ip.Source);
        Assert.Equal(target, ip.Destination);
        Assert.True(UdpDatagram.TryParse(ip.Payload, out var udp));
        Assert.Equal(sourcePort, udp.SourcePort);
        Assert.Equal(targetPort, udp.DestinationPort);
        Assert.Equal(payload, udp.Payload.ToArray());
    }

    /// <summary>Whatever the bytes, parsing never throws and every view it yields lies inside them.</summary>
    [Property(MaxTest = 1000)]
    public void Any_bytes_parse_safely_into_views_that_stay_inside_them(NonNull<byte[]> data)
    {
        var bytes = data.Get;
        if (EthernetFrame.TryParse(bytes, out var ethernet))
        {
            Assert.Equal(bytes.Length - 14, ethernet.Payload.Length);
        }
        if (Ipv4Packet.TryParse(bytes, out var ip))
        {
            Assert.True(ip.Payload.Length <= bytes.Length - 20);
            _ = ip.Protocol + ip.Source + ip.Destination;
        }
        if (UdpDatagram.TryParse(bytes, out var udp))
        {
            Assert.True(udp.Payload.Length <= bytes.Length - 8);
        }
        if (DhcpMessage.TryParse(bytes, out var dhcp))
        {
            _ = dhcp.MessageType;
            _ = dhcp.RequestedAddress;
            _ = dhcp.ServerIdentifier;
            _ = dhcp.ClientHardwareAddress;
        }
        Assert.False(GuestFrames.IsWellFormed(bytes) && bytes.Length < 14);
    }

    /// <summary>Random IPv4 headers: accepted exactly when their lengths fit each other and the bytes.</summary>
    [Property(MaxTest = 1000)]
    public Property Ipv4_lengths_decide_acceptance()
    {
        var cases = from versionAndLength in Gen.Choose(0, 255)
                    from totalLength in Gen.Choose(0, 120)
                    from available in Gen.Choose(0, 100)
                    select (versionAndLength, totalLength, available);
        return Prop.ForAll(Arb.From(cases), c =>
        {
            var bytes = new byte[c.available];
            if (bytes.Length >= 4)
            {
                bytes[0] = (byte)c.versionAndLength;
                bytes[2] = (byte)(c.totalLength >> 8);
                bytes[3] = (byte)c.totalLength;
            }
            var headerLength = (c.versionAndLength & 0x0f) * 4;
            var expected = bytes.Length >= 20 && c.versionAndLength >> 4 == 4 && headerLength >= 20 &&
                c.totalLength >= headerLength && c.totalLength <= bytes.Length;
            Assert.Equal(expected, Ipv4Packet.TryParse(bytes, out var packet));
            if (expected)
            {
                Assert.Equal(c.totalLength - headerLength, packet.Payload.Length);
            }
        });
    }

    [Fact]
    public void Dhcp_options_are_found_past_padding_and_a_missing_end_is_accepted()
    {
        var message = DhcpPayload([0, 0, 53, 1, 3, 0, 50, 4, 192, 168, 65, 9, 54, 4, 192, 168, 65, 1]);
        Assert.True(DhcpMessage.TryParse(message, out var dhcp));
        Assert.Equal(DhcpMessageType.Request, dhcp.MessageType);
        Assert.Equal(Ipv4Packet.ToUInt32(IPAddress.Parse("192.168.65.9")), dhcp.RequestedAddress);
        Assert.Equal(Ipv4Packet.ToUInt32(TestFrames.Gateway), dhcp.ServerIdentifier);
        Assert.Equal(TestFrames.GuestMac, dhcp.ClientHardwareAddress);
        Assert.Equal(0x1234abcdu, dhcp.TransactionId);
    }

    [Fact]
    public void Options_after_the_end_option_are_not_read()
    {
        Assert.True(DhcpMessage.TryParse(DhcpPayload([255, 53, 1, 1]), out var dhcp));
        Assert.Null(dhcp.MessageType);
    }

    [Theory]
    [InlineData(new byte[] { 53 })] // no length byte
    [InlineData(new byte[] { 53, 2, 1 })] // value runs past the end
    [InlineData(new byte[] { 53, 1, 1, 50, 255, 1 })]
    public void A_dhcp_option_running_past_the_message_is_refused(byte[] options)
    {
        Assert.False(DhcpMessage.TryParse(DhcpPayload(options), out _));
    }

    [Fact]
    public void Odd_option_values_read_as_absent()
    {
        Assert.True(DhcpMessage.TryParse(DhcpPayload([53, 2, 1, 1, 50, 3, 1, 2, 3, 54, 0]), out var dhcp));
        Assert.Null(dhcp.MessageType);
        Assert.Null(dhcp.RequestedAddress);
        Assert.Null(dhcp.ServerIdentifier);
        Assert.True(DhcpMessage.TryParse(DhcpPayload([53, 1, 9]), out var unknown));
        Assert.Null(unknown.MessageType);
    }

    [Fact]
    public void A_dhcp_message_needs_its_fixed_part_an_ethernet_client_and_the_magic_cookie()
    {
        var good = DhcpPayload([53, 1, 1]);
        Assert.True(DhcpMessage.TryParse(good, out _));
        Assert.False(DhcpMessage.TryParse(good.AsSpan(0, 239), out _));
        foreach (var (offset, value) in new[] { (1, (byte)6), (2, (byte)16), (236, (byte)0) })
        {
            var bad = (byte[])good.Clone();
            bad[offset] = value;
            Assert.False(DhcpMessage.TryParse(bad, out _));
        }
    }

    [Theory]
    [InlineData(0x0806, 28, true)]
    [InlineData(0x0806, 27, false)]
    [InlineData(0x86dd, 60, false)] // IPv6: this network has none
    [InlineData(0x8100, 60, false)]
    public void Guest_frames_pass_on_only_as_arp_or_ipv4_that_fits(int etherType, int payloadLength, bool passes)
    {
        Assert.Equal(passes, GuestFrames.IsWellFormed(TestFrames.Ethernet(TestFrames.GuestMac, MacAddress.Broadcast, (ushort)etherType, new byte[payloadLength])));
    }

    [Fact]
    public void Guest_ipv4_frames_pass_on_only_with_a_consistent_header()
    {
        var frame = TestFrames.Udp(TestFrames.GuestMac, MacAddress.Broadcast, Source, Destination, 1, 2, [1]);
        Assert.True(GuestFrames.IsWellFormed(frame));
        frame[14 + 3] = 200;
        Assert.False(GuestFrames.IsWellFormed(frame));
        Assert.False(GuestFrames.IsWellFormed(new byte[FrameLimits.MaxFrameLength + 1]));
    }

    private static byte[] DhcpPayload(byte[] options)
    {
        var frame = TestFrames.ClientDhcp(new TestFrames.DhcpOptions(1));
        var fixedPart = frame.AsSpan(14 + 20 + 8, 240).ToArray();
        return [.. fixedPart, .. options];
    }
}
