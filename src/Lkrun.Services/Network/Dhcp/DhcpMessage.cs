using System.Buffers.Binary;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Dhcp;

/// <summary>The DHCP message types of option 53 (RFC 2132 section 9.6).</summary>
public enum DhcpMessageType : byte
{
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

/// <summary>
/// A view of a DHCP message (RFC 2131 section 2): BOOTP's fixed 236 bytes, the magic cookie, then options of
/// code, length and value (RFC 2132). <see cref="TryParse"/> accepts only Ethernet clients (6-byte hardware
/// addresses) and options that all lie inside the message, so reading one never runs past the end.
/// </summary>
public readonly ref struct DhcpMessage
{
    public const int OptionsOffset = 240;
    public const uint MagicCookie = 0x63825363;
    public const byte BootRequest = 1;
    public const byte BootReply = 2;
    public const ushort BroadcastFlag = 0x8000;

    public const byte OptionPad = 0;
    public const byte OptionSubnetMask = 1;
    public const byte OptionRouter = 3;
    public const byte OptionDnsServers = 6;
    public const byte OptionInterfaceMtu = 26;
    public const byte OptionRequestedAddress = 50;
    public const byte OptionLeaseTime = 51;
    public const byte OptionMessageType = 53;
    public const byte OptionServerIdentifier = 54;
    public const byte OptionMessage = 56;
    public const byte OptionEnd = 255;

    private const byte HardwareTypeEthernet = 1;

    private readonly ReadOnlySpan<byte> _bytes;

    private DhcpMessage(ReadOnlySpan<byte> bytes) => _bytes = bytes;

    public byte Operation => _bytes[0];

    public uint TransactionId => BinaryPrimitives.ReadUInt32BigEndian(_bytes[4..]);

    public ushort Flags => BinaryPrimitives.ReadUInt16BigEndian(_bytes[10..]);

    /// <summary><c>ciaddr</c>: the client's address, when it already has one it can answer ARP for.</summary>
    public uint ClientAddress => BinaryPrimitives.ReadUInt32BigEndian(_bytes[12..]);

    /// <summary><c>yiaddr</c>: the address a server assigns.</summary>
    public uint YourAddress => BinaryPrimitives.ReadUInt32BigEndian(_bytes[16..]);

    /// <summary><c>giaddr</c>: the relay agent the message came through, zero when none.</summary>
    public uint RelayAddress => BinaryPrimitives.ReadUInt32BigEndian(_bytes[24..]);

    /// <summary><c>chaddr</c>: the client's MAC address.</summary>
    public MacAddress ClientHardwareAddress => MacAddress.FromBytes(_bytes.Slice(28, 6));

    public DhcpMessageType? MessageType =>
        TryGetOption(OptionMessageType, out var value) && value.Length == 1 && value[0] is >= 1 and <= 8 ? (DhcpMessageType)value[0] : null;

    public uint? RequestedAddress => AddressOption(OptionRequestedAddress);

    public uint? ServerIdentifier => AddressOption(OptionServerIdentifier);

    public static bool TryParse(ReadOnlySpan<byte> bytes, out DhcpMessage message)
    {
        message = default;
        if (bytes.Length < OptionsOffset || bytes[1] != HardwareTypeEthernet || bytes[2] != 6 ||
            BinaryPrimitives.ReadUInt32BigEndian(bytes[236..]) != MagicCookie)
        {
            return false;
        }
        var candidate = new DhcpMessage(bytes);
        if (!candidate.OptionsAreWellFormed())
        {
            return false;
        }
        message = candidate;
        return true;
    }

    /// <summary>The value of the first option with <paramref name="code"/>.</summary>
    public bool TryGetOption(byte code, out ReadOnlySpan<byte> value) => FindOption(code, out value) == OptionSearch.Found;

    /// <summary>Every option's length byte and value lie inside the message (the end option may be missing).</summary>
    private bool OptionsAreWellFormed() => FindOption(code: null, out _) != OptionSearch.Malformed;

    private enum OptionSearch
    {
        Found,
        NotFound,
        Malformed,
    }

    /// <summary>Walks the options up to the end option; <paramref name="code"/> null walks them all, to check them.</summary>
    private OptionSearch FindOption(byte? code, out ReadOnlySpan<byte> value)
    {
        var options = _bytes[OptionsOffset..];
        var i = 0;
        value = default;
        while (i < options.Length && options[i] != OptionEnd)
        {
            if (options[i] == OptionPad)
            {
                i++;
                continue;
            }
            if (i + 1 >= options.Length || i + 2 + options[i + 1] > options.Length)
            {
                return OptionSearch.Malformed;
            }
            if (options[i] == code)
            {
                value = options.Slice(i + 2, options[i + 1]);
                return OptionSearch.Found;
            }
            i += 2 + options[i + 1];
        }
        return OptionSearch.NotFound;
    }

    private uint? AddressOption(byte code) =>
        TryGetOption(code, out var value) && value.Length == 4 ? BinaryPrimitives.ReadUInt32BigEndian(value) : null;
}
