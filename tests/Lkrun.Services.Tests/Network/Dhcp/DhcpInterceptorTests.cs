using System.Net;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network.Dhcp;

public sealed class DhcpInterceptorTests
{
    private readonly Recorder _replies = new();
    private readonly Recorder _stack = new();
    private readonly DhcpInterceptor _interceptor;

    public DhcpInterceptorTests()
    {
        _interceptor = new DhcpInterceptor(new DhcpServer(DhcpSettings.ForNatNetwork(GuestMac, Leased, 65520)), _replies, _stack);
    }

    private sealed class Recorder : IFrameSink
    {
        public List<byte[]> Frames { get; } = [];

        public void Deliver(ReadOnlySpan<byte> frame) => Frames.Add(frame.ToArray());
    }

    [Fact]
    public void A_request_to_the_server_is_answered_back_to_the_guest_and_kept_from_the_stack()
    {
        _interceptor.Deliver(ClientDhcp(new DhcpOptions(1), broadcast: true));
        var offer = Assert.Single(_replies.Frames);
        Assert.True(EthernetFrame.TryParse(offer, out var ethernet));
        Assert.True(Ipv4Packet.TryParse(ethernet.Payload, out var ip));
        Assert.True(UdpDatagram.TryParse(ip.Payload, out var udp));
        Assert.True(DhcpMessage.TryParse(udp.Payload, out var dhcp));
        Assert.Equal(DhcpMessageType.Offer, dhcp.MessageType);
        Assert.Empty(_stack.Frames);
    }

    [Fact]
    public void A_request_the_server_leaves_unanswered_still_never_reaches_the_stack()
    {
        // Another client in the guest: the server serves the VM's own MAC only, and libslirp's DHCP is off anyway.
        var stranger = MacAddress.FromBytes([0x02, 0, 0, 0, 0, 0x99]);
        _interceptor.Deliver(ClientDhcp(new DhcpOptions(1), mac: stranger, broadcast: true));
        Assert.Empty(_replies.Frames);
        Assert.Empty(_stack.Frames);
    }

    [Fact]
    public void Everything_else_goes_on_to_the_stack_unchanged()
    {
        byte[][] frames =
        [
            ArpRequest(Leased, Gateway),
            TcpSyn(Leased, 40000, Gateway, 80, 1),
            ClientDhcp(new DhcpOptions(1), destinationPort: 68),
            Udp(GuestMac, MacAddress.Broadcast, Leased, IPAddress.Parse("192.168.65.254"), 5353, 53, [1, 2, 3]),
            [1, 2, 3],
        ];
        foreach (var frame in frames)
        {
            _interceptor.Deliver(frame);
        }
        Assert.Equal(frames, _stack.Frames);
        Assert.Empty(_replies.Frames);
    }
}
