using System.Net;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Shared;

/// <summary>
/// The switch's port to the network's own services, as on the private NAT network: lkrun's DHCP server answers DHCP
/// (for every attached VM, by its MAC), and libslirp is the gateway at <see cref="NatSubnet.Gateway"/> (NAT, the
/// host's loopback) and the DNS server at <see cref="NatSubnet.Dns"/>. It owns libslirp's MACs for both addresses;
/// frames from libslirp and the DHCP server's answers go back into the switch from this port.
/// </summary>
internal sealed class GatewayPort : ISwitchPort, IDisposable
{
    /// <summary>The MAC libslirp answers ARP with for the DNS server's address: 52:55 and the address.</summary>
    public static readonly MacAddress DnsMac = MacAddress.FromBytes([0x52, 0x55, .. NatSubnet.Dns.GetAddressBytes()]);

    private readonly IFrameSink _fromGuests;

    private GatewayPort(EthernetSwitch network, IDhcpClients clients)
    {
        var intoSwitch = new SwitchInput(network, this);
        Stack = SlirpStack.Create(NatSubnet.HostAddress(NatSubnet.FirstLeasedHost), NatSubnet.Mtu, intoSwitch);
        _fromGuests = new DhcpInterceptor(new DhcpServer(DhcpSettings.ForNatNetwork(NatSubnet.Mtu), clients), replies: intoSwitch, next: Stack);
    }

    public SlirpStack Stack { get; }

    public bool TakesUnknownUnicast => false;

    /// <summary>Sets up libslirp and plugs the port into <paramref name="network"/>; on the thread that will drive the stack.</summary>
    public static GatewayPort Connect(EthernetSwitch network, IDhcpClients clients)
    {
        var gateway = new GatewayPort(network, clients);
        if (!network.Connect(gateway, SlirpStack.GatewayMac, DnsMac))
        {
            gateway.Dispose();
            throw new InvalidOperationException("the gateway's MACs are taken");
        }
        return gateway;
    }

    public void Deliver(ReadOnlySpan<byte> frame) => _fromGuests.Deliver(frame);

    public void Dispose() => Stack.Dispose();

    /// <summary>Frames the gateway sends, into the switch as coming from its port.</summary>
    private sealed class SwitchInput(EthernetSwitch network, ISwitchPort gateway) : IFrameSink
    {
        public void Deliver(ReadOnlySpan<byte> frame) => network.Forward(gateway, frame);
    }
}
