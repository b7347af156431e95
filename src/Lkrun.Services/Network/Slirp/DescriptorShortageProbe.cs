using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Slirp;

/// <summary>
/// Lets lkrun say when the NAT runs out of descriptors. libslirp opens a host socket for every new guest TCP
/// connection and, when it cannot, answers the guest itself (an ICMP unreachable) without telling lkrun. So
/// before a connection request (a SYN without ACK) reaches the stack, one descriptor is taken and given back at
/// once (<paramref name="canOpenOne"/>: <see cref="DescriptorShortage.CanOpenOne"/>); when none can be,
/// <paramref name="reportShortage"/> says so (<see cref="DescriptorShortage.Report"/>: once, not per connection).
/// Every frame goes on to <paramref name="next"/> unchanged.
/// </summary>
internal sealed class DescriptorShortageProbe(IFrameSink next, Func<bool> canOpenOne, Action reportShortage) : IFrameSink
{
    private const byte ProtocolTcp = 6;
    private const int TcpFlagsOffset = 13;
    private const byte TcpSyn = 0x02, TcpAck = 0x10;

    public void Deliver(ReadOnlySpan<byte> frame)
    {
        if (IsConnectionRequest(frame) && !canOpenOne())
        {
            reportShortage();
        }
        next.Deliver(frame);
    }

    private static bool IsConnectionRequest(ReadOnlySpan<byte> frame) =>
        EthernetFrame.TryParse(frame, out var ethernet) && ethernet.EtherType == EthernetFrame.TypeIpv4
        && Ipv4Packet.TryParse(ethernet.Payload, out var ip) && ip.Protocol == ProtocolTcp && !ip.IsFragment
        && ip.Payload.Length > TcpFlagsOffset && (ip.Payload[TcpFlagsOffset] & (TcpSyn | TcpAck)) == TcpSyn;
}
