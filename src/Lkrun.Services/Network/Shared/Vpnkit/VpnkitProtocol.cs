using System.Buffers.Binary;
using System.Net;
using System.Text;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Services.Network.Shared.Vpnkit;

/// <summary>
/// VPNKit's ethernet protocol, as hyperkit's <c>virtio-vpnkit</c> device and VPNKit's Go client
/// (<c>go/pkg/vmnet</c>) speak it on a unix stream socket. Every number is little-endian. In order:
/// <list type="number">
/// <item>Init, both ways (<see cref="InitLength"/> bytes): the magic <c>VMN3T</c>, the protocol version (u32,
/// <see cref="Version"/>), 40 bytes of the sender's commit. The client sends first; the server answers with its own
/// and closes when it does not speak the client's version.</item>
/// <item>Command, client to server (<see cref="CommandLength"/> bytes): the type (1 byte), the interface's UUID as
/// 36 characters of text, then 4 bytes. Type 1 (ethernet) asks for an interface and leaves the 4 bytes zero; type 8
/// (preferred IPv4) asks for one with the address in them: the address read as a big-endian number and written
/// little-endian, so its bytes in reverse order. A UUID of 36 zero bytes asks the server to make one up.</item>
/// <item>Response, server to client (<see cref="ResponseLength"/> bytes, the rest zero): type 1 (vif) with the MTU
/// (u16), the largest packet (u16) and the interface's MAC (6 bytes); or type 2 (disconnect) with a reason's length
/// (1 byte) and its text, after which the server closes.</item>
/// <item>Ethernet frames both ways until either side closes, each after its length (u16):
/// <see cref="FrameStream.Vpnkit"/>.</item>
/// </list>
/// The readers below take exactly one message from the front of a buffer: false when the buffer is still too
/// short, a <see cref="VpnkitProtocolException"/> for a message that is malformed.
/// </summary>
public static class VpnkitProtocol
{
    public const int InitLength = 5 + 4 + 40;
    public const int CommandLength = 1 + 36 + 4;
    public const int ResponseLength = 1 + 1 + 256;

    /// <summary>The version hyperkit and the Go client speak, and the only one this implementation does.</summary>
    public const uint Version = 22;

    public const byte CommandEthernet = 1;
    public const byte CommandPreferredIpv4 = 8;
    public const byte ResponseVif = 1;
    public const byte ResponseDisconnect = 2;

    /// <summary>The longest disconnect reason: its length travels in one byte.</summary>
    public const int MaxReasonLength = 255;

    private const int UuidLength = 36;

    private static ReadOnlySpan<byte> Magic => "VMN3T"u8;

    /// <summary>The commit lkrun names in its init messages: it has none of VPNKit's to name.</summary>
    private static ReadOnlySpan<byte> Commit => "0000000000000000000000000000000000000000"u8;

    public static byte[] Init()
    {
        var message = new byte[InitLength];
        Magic.CopyTo(message);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(5), Version);
        Commit.CopyTo(message.AsSpan(9));
        return message;
    }

    /// <summary>The version of the init message at the front of <paramref name="buffer"/>.</summary>
    public static bool TryReadInit(ReadOnlySpan<byte> buffer, out uint version)
    {
        version = 0;
        if (buffer.Length < InitLength)
        {
            return false;
        }
        if (!buffer[..5].SequenceEqual(Magic))
        {
            throw new VpnkitProtocolException($"not VPNKit's ethernet protocol (the init message starts with {Convert.ToHexStringLower(buffer[..5])}, not VMN3T)");
        }
        version = BinaryPrimitives.ReadUInt32LittleEndian(buffer[5..]);
        return true;
    }

    public static byte[] Command(VpnkitCommand command)
    {
        var message = new byte[CommandLength];
        message[0] = command.PreferredAddress is null ? CommandEthernet : CommandPreferredIpv4;
        Encoding.ASCII.GetBytes(command.Uuid.ToString("D"), message.AsSpan(1, UuidLength));
        if (command.PreferredAddress is { } address)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(1 + UuidLength), Ipv4Packet.ToUInt32(address));
        }
        return message;
    }

    /// <summary>
    /// The command at the front of <paramref name="buffer"/>. A UUID of zero bytes comes out as
    /// <see cref="Guid.Empty"/>, for the server to replace.
    /// </summary>
    public static bool TryReadCommand(ReadOnlySpan<byte> buffer, out VpnkitCommand command)
    {
        command = null!;
        if (buffer.Length < CommandLength)
        {
            return false;
        }
        var type = buffer[0];
        if (type is not (CommandEthernet or CommandPreferredIpv4))
        {
            throw new VpnkitProtocolException(type == 6 ? "command 6 (bind_ipv4) is not supported" : $"unknown command {type}");
        }
        var uuidBytes = buffer.Slice(1, UuidLength);
        Guid uuid;
        if (!uuidBytes.ContainsAnyExcept((byte)0))
        {
            uuid = Guid.Empty;
        }
        else if (uuidBytes.ContainsAnyExceptInRange((byte)0x20, (byte)0x7e) ||
                 !Guid.TryParseExact(Encoding.ASCII.GetString(uuidBytes), "D", out uuid))
        {
            throw new VpnkitProtocolException($"the command's UUID is not one ({Printable(uuidBytes)})");
        }
        IPAddress? preferred = null;
        if (type == CommandPreferredIpv4)
        {
            preferred = Ipv4Packet.ToAddress(BinaryPrimitives.ReadUInt32LittleEndian(buffer[(1 + UuidLength)..]));
        }
        command = new VpnkitCommand(uuid, preferred);
        return true;
    }

    public static byte[] Response(VpnkitResponse response)
    {
        var message = new byte[ResponseLength];
        switch (response)
        {
            case VpnkitVif vif:
                message[0] = ResponseVif;
                BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(1), checked((ushort)vif.Mtu));
                BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(3), checked((ushort)vif.MaxPacketSize));
                vif.Mac.CopyTo(message.AsSpan(5));
                break;
            case VpnkitDisconnect disconnect:
                message[0] = ResponseDisconnect;
                var reason = Encoding.UTF8.GetBytes(disconnect.Reason);
                var length = Math.Min(reason.Length, MaxReasonLength);
                // Cut before a character that does not fit whole, so the reason stays valid UTF-8.
                while (length < reason.Length && (reason[length] & 0xc0) == 0x80)
                {
                    length--;
                }
                message[1] = (byte)length;
                reason.AsSpan(0, length).CopyTo(message.AsSpan(2));
                break;
            default:
                throw new ArgumentException($"no encoding for {response}", nameof(response));
        }
        return message;
    }

    public static bool TryReadResponse(ReadOnlySpan<byte> buffer, out VpnkitResponse response)
    {
        response = null!;
        if (buffer.Length < ResponseLength)
        {
            return false;
        }
        response = buffer[0] switch
        {
            ResponseVif => new VpnkitVif(
                BinaryPrimitives.ReadUInt16LittleEndian(buffer[1..]),
                BinaryPrimitives.ReadUInt16LittleEndian(buffer[3..]),
                MacAddress.FromBytes(buffer.Slice(5, 6))),
            ResponseDisconnect => new VpnkitDisconnect(Encoding.UTF8.GetString(buffer.Slice(2, buffer[1]))),
            var other => throw new VpnkitProtocolException($"unknown response {other}"),
        };
        return true;
    }

    private static string Printable(ReadOnlySpan<byte> bytes) =>
        bytes.ContainsAnyExceptInRange((byte)0x20, (byte)0x7e) ? Convert.ToHexStringLower(bytes) : Encoding.ASCII.GetString(bytes);
}

/// <summary>A request for an interface: its UUID (<see cref="Guid.Empty"/> for one the server makes up), and the address it would like.</summary>
public sealed record VpnkitCommand(Guid Uuid, IPAddress? PreferredAddress);

/// <summary>The server's answer to a command.</summary>
public abstract record VpnkitResponse;

/// <summary>The interface granted: its MTU, the largest packet the server takes, and its MAC.</summary>
public sealed record VpnkitVif(int Mtu, int MaxPacketSize, MacAddress Mac) : VpnkitResponse;

/// <summary>The command is refused, for <paramref name="Reason"/>; the server closes the connection.</summary>
public sealed record VpnkitDisconnect(string Reason) : VpnkitResponse;

/// <summary>A message that breaks VPNKit's ethernet protocol. The message is one line.</summary>
public sealed class VpnkitProtocolException(string message) : Exception(message);
