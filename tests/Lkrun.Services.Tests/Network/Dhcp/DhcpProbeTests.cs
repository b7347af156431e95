using System.Net;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Packets;
using static Lkrun.Services.Tests.Network.TestFrames;

namespace Lkrun.Services.Tests.Network.Dhcp;

public sealed class DhcpProbeTests
{
    private readonly DhcpServer _server = new(DhcpSettings.ForNatNetwork(65520), new SingleDhcpClient(GuestMac, Leased));

    [Fact]
    public void The_probes_discover_draws_an_offer_of_the_interfaces_address()
    {
        var discover = DhcpProbe.Discover(GuestMac, 0x5eed);
        Assert.True(_server.IsAddressedToServer(discover));
        Assert.True(UdpChecksumHolds(discover));
        var offer = _server.Answer(discover);
        Assert.NotNull(offer);
        // Without the broadcast flag the offer comes to the interface's MAC alone.
        Assert.Equal(Mac(GuestMac), offer[..6]);
        Assert.Equal(Leased, DhcpProbe.OfferedAddress(offer, GuestMac, 0x5eed));
    }

    [Fact]
    public void Only_an_offer_for_this_interface_and_this_transaction_counts()
    {
        var offer = _server.Answer(DhcpProbe.Discover(GuestMac, 7))!;
        Assert.Null(DhcpProbe.OfferedAddress(offer, GuestMac, 8));
        Assert.Null(DhcpProbe.OfferedAddress(offer, MacAddress.FromBytes([2, 0, 0, 0, 0, 9]), 7));
        Assert.Null(DhcpProbe.OfferedAddress(offer.AsSpan(0, 100), GuestMac, 7));
        var ack = _server.Answer(ClientDhcp(new DhcpOptions(3) { Requested = Leased }, xid: 7))!;
        Assert.Null(DhcpProbe.OfferedAddress(ack, GuestMac, 7));
        Assert.Null(DhcpProbe.OfferedAddress(DhcpProbe.Discover(GuestMac, 7), GuestMac, 7));
        Assert.Equal(IPAddress.Parse("192.168.65.3"), DhcpProbe.OfferedAddress(offer, GuestMac, 7));
    }
}
