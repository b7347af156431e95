using System.Net;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Slirp;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network;

/// <summary>
/// A guest flooding the NAT network with malformed frames and DHCP from made-up MACs: each kind of trouble is
/// reported once, the frames go nowhere, and the VM's own traffic passes as before.
/// </summary>
public sealed class GuestTroubleTests
{
    private readonly List<string> _notices = [];
    private readonly Recorder _replies = new();
    private readonly Recorder _stack = new();
    private readonly GuestFrameCheck _check;

    public GuestTroubleTests()
    {
        var trouble = new GuestTroubleLog(_notices.Add);
        var dhcp = new DhcpServer(DhcpSettings.ForNatNetwork(65520), new SingleDhcpClient(GuestMac, Leased), trouble);
        _check = new GuestFrameCheck(trouble, new DhcpInterceptor(dhcp, _replies, _stack));
    }

    private sealed class Recorder : IFrameSink
    {
        public List<byte[]> Frames { get; } = [];

        public void Deliver(ReadOnlySpan<byte> frame) => Frames.Add(frame.ToArray());
    }

    [Fact]
    public void Malformed_frames_by_the_thousand_are_dropped_and_reported_once()
    {
        var random = new Random(5);
        for (var i = 0; i < 1000; i++)
        {
            var frame = Udp(GuestMac, MacAddress.Broadcast, Leased, Gateway, 40000, 9, new byte[random.Next(0, 64)]);
            // A lying IHL or total length, or a frame cut inside its IPv4 or Ethernet header.
            switch (i % 4)
            {
                case 0: frame[14] = (byte)(0x40 | random.Next(0, 5)); break;
                case 1: frame[14 + 2] = 0xff; break;
                case 2: frame = frame[..(14 + random.Next(0, 20))]; break;
                default: frame = frame[..random.Next(0, 14)]; break;
            }
            _check.Deliver(frame);
        }

        Assert.Empty(_stack.Frames);
        Assert.Equal(1000, _check.MalformedFrames);
        var notice = Assert.Single(_notices);
        Assert.Matches("^network: the guest sent an? .+, which lkrun drops; further ones are dropped without a report$", notice);
    }

    [Fact]
    public void Ipv4_fragments_are_dropped_and_the_first_is_reported()
    {
        for (var offset = 0; offset < 4; offset++)
        {
            var fragment = Udp(GuestMac, MacAddress.Broadcast, Leased, Gateway, 40000, 9, new byte[16]);
            fragment[14 + 6] = (byte)(offset == 3 ? 0 : 0x20);
            fragment[14 + 7] = (byte)offset;
            _check.Deliver(fragment);
        }
        Assert.Empty(_stack.Frames);
        Assert.Equal(0, _check.MalformedFrames);
        Assert.Equal("network: the guest sent an IPv4 fragment; the NAT network drops fragmented datagrams (libslirp cannot reassemble them safely); further ones are dropped without a report",
            Assert.Single(_notices));
    }

    [Fact]
    public void Frames_of_a_type_the_network_does_not_carry_are_dropped_without_a_report()
    {
        _check.Deliver(Ethernet(GuestMac, MacAddress.Broadcast, 0x86dd, new byte[60]));
        Assert.Empty(_stack.Frames);
        Assert.Empty(_notices);
        Assert.Equal(0, _check.MalformedFrames);
    }

    [Fact]
    public void Dhcp_from_thousands_of_made_up_macs_gets_no_answer_is_reported_once_and_the_vm_is_still_served()
    {
        for (var i = 0; i < 2000; i++)
        {
            var mac = MacAddress.FromBytes([0x0a, 0xbd, 0, 0, (byte)(i >> 8), (byte)i]);
            _check.Deliver(ClientDhcp(new DhcpOptions(1), mac: mac, broadcast: true));
            _check.Deliver(ClientDhcp(new DhcpOptions(3) { Requested = Leased, Server = Gateway }, mac: mac, broadcast: true));
        }
        Assert.Empty(_replies.Frames);
        Assert.Equal("network: DHCP from 0a:bd:00:00:00:00, which is not the VM's interface, gets no answer; further ones are dropped without a report",
            Assert.Single(_notices));

        _check.Deliver(ClientDhcp(new DhcpOptions(1), broadcast: true));
        Assert.Single(_replies.Frames);
        Assert.Empty(_stack.Frames);
    }

    [Fact]
    public void A_dhcp_message_that_does_not_parse_is_reported_once_apart_from_other_trouble()
    {
        var truncated = Udp(GuestMac, MacAddress.Broadcast, IPAddress.Any, IPAddress.Broadcast, 68, 67, new byte[100]);
        _check.Deliver(truncated);
        _check.Deliver(truncated);
        _check.Deliver(Udp(GuestMac, MacAddress.Broadcast, Leased, Gateway, 40000, 9, [1])[..20]);

        Assert.Equal(2, _notices.Count);
        Assert.Equal("network: the guest sent a DHCP message of 100 bytes that does not parse, which gets no answer; further ones are dropped without a report", _notices[0]);
        Assert.StartsWith("network: the guest sent an IPv4 packet whose header does not fit its 6 bytes", _notices[1]);
        Assert.Empty(_replies.Frames);
        Assert.Empty(_stack.Frames);
    }

    [Fact]
    public void The_log_reports_each_kind_once_and_keeps_quiet_without_a_listener()
    {
        var log = new GuestTroubleLog(_notices.Add);
        foreach (var kind in Enum.GetValues<GuestTrouble>().Concat(Enum.GetValues<GuestTrouble>()))
        {
            log.Report(kind, kind.ToString());
        }
        Assert.Equal(Enum.GetNames<GuestTrouble>().Select(name => $"{name}; further ones are dropped without a report").Select(line => $"network: {line}"), _notices);
        new GuestTroubleLog(null).Report(GuestTrouble.MalformedFrame, "nobody listens");
    }
}
