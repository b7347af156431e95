using System.Buffers.Binary;
using System.Net;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Slirp;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Dhcp;

/// <summary>What the DHCP server hands out besides the clients' addresses, and the addresses it speaks from.</summary>
public sealed record DhcpSettings(
    MacAddress ServerMac,
    IPAddress Server,
    IPAddress SubnetMask,
    IPAddress Router,
    IPAddress Dns,
    int Mtu,
    TimeSpan LeaseTime)
{
    /// <summary>
    /// The NAT network's settings. The server speaks as the gateway, with the MAC libslirp gives the gateway in its
    /// ARP answers, so the guest sees a single router. The lease is long: the address belongs to the VM's identity,
    /// not to this lease.
    /// </summary>
    public static DhcpSettings ForNatNetwork(int mtu) => new(
        SlirpStack.GatewayMac,
        NatSubnet.Gateway,
        NatSubnet.Netmask,
        NatSubnet.Gateway,
        NatSubnet.Dns,
        mtu,
        TimeSpan.FromDays(1));
}

/// <summary>The interfaces a DHCP server serves: each by its MAC, with the one address it is to have.</summary>
public interface IDhcpClients
{
    /// <summary>The address leased to the interface with MAC <paramref name="client"/>; null for an interface not served.</summary>
    IPAddress? AddressOf(MacAddress client);
}

/// <summary>One interface, as on a VM's private NAT network.</summary>
public sealed record SingleDhcpClient(MacAddress Mac, IPAddress Address) : IDhcpClients
{
    public IPAddress? AddressOf(MacAddress client) => client == Mac ? Address : null;
}

/// <summary>
/// The NAT network's DHCP server (RFC 2131). Each interface it serves always gets exactly the address leased to
/// it (<see cref="IDhcpClients"/>: the VM of a private network, or every VM attached to a shared one). The
/// exchange, by the client's state:
/// <list type="bullet">
/// <item>INIT: DISCOVER is answered with an OFFER of the leased address, whatever address the client asks for.</item>
/// <item>SELECTING: a REQUEST naming this server is ACKed when it asks for the leased address and NAKed
/// otherwise; one naming another server is ignored (the client chose that one).</item>
/// <item>INIT-REBOOT: a REQUEST without a server identifier, asking for the address the client remembers, is ACKed
/// when that is the leased address and NAKed otherwise, which sends the client back to DISCOVER.</item>
/// <item>RENEWING and REBINDING: a REQUEST from a client that holds <c>ciaddr</c> is ACKed for the leased address
/// and NAKed for any other, as is one that also asks for another address in its options.</item>
/// <item>INFORM gets the network's settings without a lease; DECLINE and RELEASE change nothing, since the
/// address stays the VM's.</item>
/// </list>
/// Only the interfaces in <see cref="IDhcpClients"/> are served (by MAC): other clients get no answer, as from a
/// server whose pool is empty, and nothing is recorded for them, so DHCP from thousands of made-up MACs costs no
/// memory and cannot touch the lease registry (which leases by VM identity when the VM starts, never from DHCP).
/// The first such client, and the first message that does not parse, are reported to <paramref name="trouble"/>.
/// The server keeps no state of its own between messages. Replies go where section 4.1 says: to <c>ciaddr</c> when set, else broadcast when the
/// client asks for it, else to the offered address and the client's MAC; a NAK is always broadcast.
/// </summary>
public sealed class DhcpServer(DhcpSettings settings, IDhcpClients clients, GuestTroubleLog? trouble = null)
{
    public const ushort ServerPort = 67;
    public const ushort ClientPort = 68;

    /// <summary>BOOTP's minimum message size, which some clients still insist on.</summary>
    private const int MinimumMessageLength = 300;

    private const uint LimitedBroadcast = 0xffff_ffff;

    private readonly uint _server = Ipv4Packet.ToUInt32(settings.Server);
    private readonly uint _subnetBroadcast =
        Ipv4Packet.ToUInt32(settings.Server) | ~Ipv4Packet.ToUInt32(settings.SubnetMask);

    /// <summary>
    /// Whether <paramref name="frame"/> is a message to a DHCP server on this network (UDP to port 67 of this
    /// server or a broadcast address). Such frames are this server's alone, whether it answers them or not.
    /// </summary>
    public bool IsAddressedToServer(ReadOnlySpan<byte> frame) => TryGetServerBound(frame, out _);

    /// <summary>The reply to <paramref name="frame"/> as a whole Ethernet frame; null when it gets none.</summary>
    public byte[]? Answer(ReadOnlySpan<byte> frame)
    {
        if (!TryGetServerBound(frame, out var payload))
        {
            return null;
        }
        if (!DhcpMessage.TryParse(payload, out var request))
        {
            trouble?.Report(GuestTrouble.MalformedDhcp, $"the guest sent a DHCP message of {payload.Length} bytes that does not parse, which gets no answer");
            return null;
        }
        if (request.Operation != DhcpMessage.BootRequest || request.RelayAddress != 0)
        {
            return null;
        }
        if (clients.AddressOf(request.ClientHardwareAddress) is not { } address)
        {
            trouble?.Report(GuestTrouble.UnservedDhcpClient, $"DHCP from {request.ClientHardwareAddress}, which is not the VM's interface, gets no answer");
            return null;
        }
        var leased = Ipv4Packet.ToUInt32(address);
        return request.MessageType switch
        {
            DhcpMessageType.Discover => Reply(request, DhcpMessageType.Offer, leased),
            DhcpMessageType.Request => AnswerRequest(request, leased),
            DhcpMessageType.Inform when request.ClientAddress != 0 => Reply(request, DhcpMessageType.Ack, 0),
            _ => null,
        };
    }

    /// <summary>
    /// A REQUEST names its address in the requested-address option (SELECTING, INIT-REBOOT) or in <c>ciaddr</c>
    /// (RENEWING, REBINDING). Every address it names must be the leased one, else the client is told to start over.
    /// </summary>
    private byte[]? AnswerRequest(DhcpMessage request, uint leased)
    {
        if (request.ServerIdentifier is { } server && server != _server)
        {
            return null; // SELECTING another server's offer
        }
        var requested = request.RequestedAddress;
        var current = request.ClientAddress;
        if (requested is null && current == 0)
        {
            return null;
        }
        var namesOnlyTheLease = (requested is null || requested == leased) && (current == 0 || current == leased);
        return namesOnlyTheLease ? Reply(request, DhcpMessageType.Ack, leased) : Reply(request, DhcpMessageType.Nak, 0);
    }

    private bool TryGetServerBound(ReadOnlySpan<byte> frame, out ReadOnlySpan<byte> payload)
    {
        payload = default;
        if (!EthernetFrame.TryParse(frame, out var ethernet) || ethernet.EtherType != EthernetFrame.TypeIpv4 ||
            !Ipv4Packet.TryParse(ethernet.Payload, out var ip) || ip.Protocol != Ipv4Packet.ProtocolUdp || ip.IsFragment ||
            !IsServerAddress(ip.Destination) ||
            !UdpDatagram.TryParse(ip.Payload, out var udp) || udp.DestinationPort != ServerPort)
        {
            return false;
        }
        payload = udp.Payload;
        return true;
    }

    private bool IsServerAddress(uint address) => address == LimitedBroadcast || address == _server || address == _subnetBroadcast;

    private byte[] Reply(DhcpMessage request, DhcpMessageType type, uint yourAddress)
    {
        Span<byte> options = stackalloc byte[64];
        var length = WriteOptions(options, type, withLease: yourAddress != 0);
        var messageLength = Math.Max(MinimumMessageLength, DhcpMessage.OptionsOffset + length);
        const int headers = EthernetFrame.HeaderLength + Ipv4Packet.MinimumHeaderLength + UdpDatagram.HeaderLength;
        var frame = new byte[headers + messageLength];
        var message = frame.AsSpan(headers);
        message[0] = DhcpMessage.BootReply;
        message[1] = 1;
        message[2] = 6;
        BinaryPrimitives.WriteUInt32BigEndian(message[4..], request.TransactionId);
        BinaryPrimitives.WriteUInt16BigEndian(message[10..], request.Flags);
        if (type == DhcpMessageType.Ack)
        {
            BinaryPrimitives.WriteUInt32BigEndian(message[12..], request.ClientAddress);
        }
        BinaryPrimitives.WriteUInt32BigEndian(message[16..], yourAddress);
        request.ClientHardwareAddress.CopyTo(message[28..]);
        BinaryPrimitives.WriteUInt32BigEndian(message[236..], DhcpMessage.MagicCookie);
        options[..length].CopyTo(message[DhcpMessage.OptionsOffset..]);

        var (targetAddress, targetMac) = Destination(request, type, yourAddress);
        EthernetFrame.WriteHeader(frame, targetMac, settings.ServerMac, EthernetFrame.TypeIpv4);
        var ip = frame.AsSpan(EthernetFrame.HeaderLength);
        Ipv4Packet.WriteHeader(ip, Ipv4Packet.ProtocolUdp, _server, targetAddress, UdpDatagram.HeaderLength + messageLength);
        UdpDatagram.WriteHeader(ip[Ipv4Packet.MinimumHeaderLength..], _server, ServerPort, targetAddress, ClientPort, messageLength);
        return frame;
    }

    private (uint Address, MacAddress Mac) Destination(DhcpMessage request, DhcpMessageType type, uint yourAddress)
    {
        if (type == DhcpMessageType.Nak || (request.ClientAddress == 0 && (request.Flags & DhcpMessage.BroadcastFlag) != 0))
        {
            return (LimitedBroadcast, MacAddress.Broadcast);
        }
        return (request.ClientAddress != 0 ? request.ClientAddress : yourAddress, request.ClientHardwareAddress);
    }

    /// <summary>The reply's options; an INFORM's ACK carries the settings without a lease.</summary>
    private int WriteOptions(Span<byte> options, DhcpMessageType type, bool withLease)
    {
        var writer = new OptionWriter(options);
        writer.Add(DhcpMessage.OptionMessageType, (byte)type);
        writer.Add(DhcpMessage.OptionServerIdentifier, _server);
        if (type == DhcpMessageType.Nak)
        {
            writer.Add(DhcpMessage.OptionMessage, "the address asked for is not this VM's"u8);
        }
        else
        {
            if (withLease)
            {
                writer.Add(DhcpMessage.OptionLeaseTime, (uint)settings.LeaseTime.TotalSeconds);
            }
            writer.Add(DhcpMessage.OptionSubnetMask, Ipv4Packet.ToUInt32(settings.SubnetMask));
            writer.Add(DhcpMessage.OptionRouter, Ipv4Packet.ToUInt32(settings.Router));
            writer.Add(DhcpMessage.OptionDnsServers, Ipv4Packet.ToUInt32(settings.Dns));
            writer.Add(DhcpMessage.OptionInterfaceMtu, checked((ushort)settings.Mtu));
        }
        writer.End();
        return writer.Length;
    }

    /// <summary>Appends options (code, length, value) to a buffer sized for them.</summary>
    private ref struct OptionWriter(Span<byte> buffer)
    {
        private readonly Span<byte> _buffer = buffer;

        public int Length { get; private set; }

        public void Add(byte code, byte value) => Add(code, [value]);

        public void Add(byte code, ushort value)
        {
            Span<byte> bytes = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16BigEndian(bytes, value);
            Add(code, bytes);
        }

        public void Add(byte code, uint value)
        {
            Span<byte> bytes = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
            Add(code, bytes);
        }

        public void Add(byte code, scoped ReadOnlySpan<byte> value)
        {
            _buffer[Length] = code;
            _buffer[Length + 1] = checked((byte)value.Length);
            value.CopyTo(_buffer[(Length + 2)..]);
            Length += 2 + value.Length;
        }

        public void End() => _buffer[Length++] = DhcpMessage.OptionEnd;
    }
}
