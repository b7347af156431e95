using System.Buffers.Binary;
using System.Net;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Slirp;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network;

public sealed class LinkLocalGuardTests
{
    private static readonly IPAddress Metadata = IPAddress.Parse("169.254.169.254");

    private readonly Recorder _replies = new();
    private readonly Recorder _stack = new();
    private readonly LinkLocalGuard _guard;

    public LinkLocalGuardTests() => _guard = new LinkLocalGuard(_replies, _stack);

    private sealed class Recorder : IFrameSink
    {
        public List<byte[]> Frames { get; } = [];

        public void Deliver(ReadOnlySpan<byte> frame) => Frames.Add(frame.ToArray());
    }

    [Fact]
    public void A_syn_to_a_link_local_address_is_reset_by_lkrun_and_never_reaches_the_stack()
    {
        _guard.Deliver(TcpSyn(Leased, 40000, Metadata, 80, sequence: 1000));
        Assert.Empty(_stack.Frames);
        var reset = Assert.Single(_replies.Frames);
        Assert.Equal(Mac(GuestMac), reset[..6]);
        Assert.Equal(Mac(SlirpStack.GatewayMac), reset[6..12]);
        var ip = reset.AsSpan(14);
        Assert.Equal(0xffff, OnesComplementSum(ip[..20]));
        Assert.Equal(6, ip[9]);
        Assert.Equal(Metadata.GetAddressBytes(), ip.Slice(12, 4).ToArray());
        Assert.Equal(Leased.GetAddressBytes(), ip.Slice(16, 4).ToArray());
        var tcp = ip[20..];
        Assert.Equal(80, BinaryPrimitives.ReadUInt16BigEndian(tcp));
        Assert.Equal(40000, BinaryPrimitives.ReadUInt16BigEndian(tcp[2..]));
        Assert.Equal(1001u, BinaryPrimitives.ReadUInt32BigEndian(tcp[8..]));
        Assert.Equal(0x14, tcp[13]); // RST and ACK
        byte[] pseudo = [.. Metadata.GetAddressBytes(), .. Leased.GetAddressBytes(), 0, 6, 0, 20];
        Assert.Equal(0xffff, OnesComplementSum([.. pseudo, .. tcp.ToArray()]));
        Assert.Equal(1, _guard.BlockedFrames);
    }

    [Fact]
    public void Udp_to_a_link_local_address_gets_an_icmp_unreachable_quoting_it()
    {
        var datagram = Udp(GuestMac, SlirpStack.GatewayMac, Leased, Metadata, 5353, 53, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        _guard.Deliver(datagram);
        Assert.Empty(_stack.Frames);
        var reply = Assert.Single(_replies.Frames);
        var ip = reply.AsSpan(14);
        Assert.Equal(1, ip[9]);
        var icmp = ip[20..];
        Assert.Equal(3, icmp[0]);
        Assert.Equal(13, icmp[1]);
        Assert.Equal(0xffff, OnesComplementSum(icmp));
        // The offending IPv4 header and the first 8 bytes of its payload.
        Assert.Equal(datagram.AsSpan(14, 28).ToArray(), icmp[8..].ToArray());
    }

    [Fact]
    public void A_reset_or_an_icmp_error_to_a_link_local_address_is_dropped_without_an_answer()
    {
        var rst = TcpSyn(Leased, 40000, Metadata, 80, sequence: 1);
        rst[14 + 20 + 13] = 0x04;
        _guard.Deliver(rst);
        var icmpError = Ethernet(GuestMac, SlirpStack.GatewayMac, 0x0800, Ipv4(1, Leased, Metadata, [3, 3, 0, 0, 0, 0, 0, 0]));
        _guard.Deliver(icmpError);
        Assert.Empty(_replies.Frames);
        Assert.Empty(_stack.Frames);
    }

    [Theory]
    [InlineData("192.168.65.1")]
    [InlineData("8.8.8.8")]
    [InlineData("169.253.255.255")]
    [InlineData("169.255.0.1")]
    public void Other_destinations_pass_unchanged(string destination)
    {
        var syn = TcpSyn(Leased, 40000, IPAddress.Parse(destination), 80, sequence: 1);
        _guard.Deliver(syn);
        Assert.Equal(syn, Assert.Single(_stack.Frames));
        Assert.Empty(_replies.Frames);
    }

    [Fact]
    public void Arp_and_malformed_frames_pass_on_for_the_stack_to_judge()
    {
        var arp = ArpRequest(Leased, Metadata);
        _guard.Deliver(arp);
        _guard.Deliver([1, 2, 3]);
        Assert.Equal(2, _stack.Frames.Count);
        Assert.Empty(_replies.Frames);
    }
}
