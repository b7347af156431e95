using System.Buffers.Binary;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network;

/// <summary>
/// Keeps the guest from reaching link-local addresses (169.254.0.0/16) through the NAT: on a cloud machine that is
/// where the instance metadata service hands out the host's credentials, so a guest must never get there through
/// lkrun's sockets. Such frames never reach the stack; the guest gets its answer at once instead of a timeout: a
/// TCP reset for a TCP segment, an ICMP "communication administratively prohibited" for anything else (never for
/// an ICMP error, a later fragment or a reset, which must go unanswered). Every other frame goes on to
/// <paramref name="next"/> unchanged.
/// </summary>
public sealed class LinkLocalGuard(IFrameSink replies, IFrameSink next) : IFrameSink
{
    private const uint LinkLocalNetwork = 0xa9fe_0000; // 169.254.0.0
    private const uint LinkLocalMask = 0xffff_0000;
    private const byte ProtocolIcmp = 1;
    private const byte ProtocolTcp = 6;
    private const int TcpHeaderLength = 20;
    private const byte TcpFin = 0x01, TcpSyn = 0x02, TcpRst = 0x04, TcpAck = 0x10;
    private const byte IcmpUnreachable = 3, IcmpAdministrativelyProhibited = 13, IcmpEchoRequest = 8;
    /// <summary>What an ICMP error quotes of the offending packet: its header and the first 8 bytes after it.</summary>
    private const int QuotedPayload = 8;

    /// <summary>Frames kept from the stack, for tests and diagnostics.</summary>
    public long BlockedFrames { get; private set; }

    public static bool IsLinkLocal(uint address) => (address & LinkLocalMask) == LinkLocalNetwork;

    public void Deliver(ReadOnlySpan<byte> frame)
    {
        if (!EthernetFrame.TryParse(frame, out var ethernet) || ethernet.EtherType != EthernetFrame.TypeIpv4
            || !Ipv4Packet.TryParse(ethernet.Payload, out var ip) || !IsLinkLocal(ip.Destination))
        {
            next.Deliver(frame);
            return;
        }
        BlockedFrames++;
        var header = ethernet.Payload[..((ethernet.Payload[0] & 0x0f) * 4)];
        if (ip.Protocol == ProtocolTcp)
        {
            if (!ip.IsFragment && ip.Payload.Length >= TcpHeaderLength)
            {
                Reset(ethernet, ip);
            }
        }
        else if (!IsLaterFragment(header) && !IsIcmpError(ip))
        {
            Unreachable(ethernet, header, ip);
        }
    }

    private static bool IsLaterFragment(ReadOnlySpan<byte> ipHeader) => (BinaryPrimitives.ReadUInt16BigEndian(ipHeader[6..]) & 0x1fff) != 0;

    /// <summary>Only ICMP echo requests are answered among ICMP messages; errors and the rest are not.</summary>
    private static bool IsIcmpError(Ipv4Packet ip) =>
        ip.Protocol == ProtocolIcmp && (ip.Payload.Length == 0 || ip.Payload[0] != IcmpEchoRequest);

    /// <summary>RFC 9293's reset for a segment that reaches no connection.</summary>
    private void Reset(EthernetFrame ethernet, Ipv4Packet ip)
    {
        var segment = ip.Payload;
        var flags = segment[13];
        if ((flags & TcpRst) != 0)
        {
            return;
        }
        var dataOffset = (segment[12] >> 4) * 4;
        var dataLength = Math.Max(0, segment.Length - dataOffset);
        uint sequence = 0, acknowledgement = 0;
        byte replyFlags = TcpRst;
        if ((flags & TcpAck) != 0)
        {
            sequence = BinaryPrimitives.ReadUInt32BigEndian(segment[8..]);
        }
        else
        {
            var length = (uint)dataLength + ((flags & TcpSyn) != 0 ? 1u : 0) + ((flags & TcpFin) != 0 ? 1u : 0);
            acknowledgement = unchecked(BinaryPrimitives.ReadUInt32BigEndian(segment[4..]) + length);
            replyFlags |= TcpAck;
        }
        Span<byte> reply = stackalloc byte[EthernetFrame.HeaderLength + Ipv4Packet.MinimumHeaderLength + TcpHeaderLength];
        EthernetFrame.WriteHeader(reply, ethernet.Source, ethernet.Destination, EthernetFrame.TypeIpv4);
        var packet = reply[EthernetFrame.HeaderLength..];
        Ipv4Packet.WriteHeader(packet, ProtocolTcp, ip.Destination, ip.Source, TcpHeaderLength);
        var tcp = packet[Ipv4Packet.MinimumHeaderLength..];
        tcp.Clear();
        BinaryPrimitives.WriteUInt16BigEndian(tcp, BinaryPrimitives.ReadUInt16BigEndian(segment[2..]));
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], BinaryPrimitives.ReadUInt16BigEndian(segment));
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], acknowledgement);
        tcp[12] = (TcpHeaderLength / 4) << 4;
        tcp[13] = replyFlags;
        var sum = InternetChecksum.Add(0, ip.Destination);
        sum = InternetChecksum.Add(sum, ip.Source);
        sum = InternetChecksum.Add(sum, ProtocolTcp);
        sum = InternetChecksum.Add(sum, (uint)TcpHeaderLength);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], InternetChecksum.Complete(InternetChecksum.Add(sum, tcp)));
        replies.Deliver(reply);
    }

    /// <summary>An ICMP destination unreachable from the blocked address, quoting the packet as RFC 792 asks.</summary>
    private void Unreachable(EthernetFrame ethernet, ReadOnlySpan<byte> ipHeader, Ipv4Packet ip)
    {
        var quoted = ipHeader.Length + Math.Min(QuotedPayload, ip.Payload.Length);
        const int IcmpHeaderLength = 8;
        Span<byte> reply = stackalloc byte[EthernetFrame.HeaderLength + Ipv4Packet.MinimumHeaderLength + IcmpHeaderLength + 60 + QuotedPayload];
        reply = reply[..(EthernetFrame.HeaderLength + Ipv4Packet.MinimumHeaderLength + IcmpHeaderLength + quoted)];
        EthernetFrame.WriteHeader(reply, ethernet.Source, ethernet.Destination, EthernetFrame.TypeIpv4);
        var packet = reply[EthernetFrame.HeaderLength..];
        Ipv4Packet.WriteHeader(packet, ProtocolIcmp, ip.Destination, ip.Source, IcmpHeaderLength + quoted);
        var icmp = packet[Ipv4Packet.MinimumHeaderLength..];
        icmp[..IcmpHeaderLength].Clear();
        icmp[0] = IcmpUnreachable;
        icmp[1] = IcmpAdministrativelyProhibited;
        ipHeader.CopyTo(icmp[IcmpHeaderLength..]);
        ip.Payload[..(quoted - ipHeader.Length)].CopyTo(icmp[(IcmpHeaderLength + ipHeader.Length)..]);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Complete(InternetChecksum.Add(0, icmp)));
        replies.Deliver(reply);
    }
}
