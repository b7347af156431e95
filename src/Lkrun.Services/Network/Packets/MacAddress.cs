using System.Globalization;
using System.Security.Cryptography;

namespace Lkrun.Services.Network.Packets;

/// <summary>An Ethernet MAC address, written as six lower-case hex pairs separated by colons.</summary>
public readonly record struct MacAddress
{
    private readonly ulong _value;

    private MacAddress(ulong value) => _value = value;

    public byte this[int index] => (byte)(_value >> (8 * (5 - index)));

    /// <summary>Bit 1 of the first octet: set for addresses chosen locally rather than assigned to a vendor.</summary>
    public bool IsLocallyAdministered => (this[0] & 0x02) != 0;

    /// <summary>Bit 0 of the first octet: set for group (multicast) addresses, which no interface may own.</summary>
    public bool IsMulticast => (this[0] & 0x01) != 0;

    /// <summary>A random unicast address from the locally administered range, so it never clashes with a vendor's.</summary>
    public static MacAddress NewLocallyAdministered()
    {
        Span<byte> bytes = stackalloc byte[6];
        RandomNumberGenerator.Fill(bytes);
        bytes[0] = (byte)((bytes[0] & 0xfc) | 0x02);
        return FromBytes(bytes);
    }

    /// <summary>ff:ff:ff:ff:ff:ff, every station on the link.</summary>
    public static MacAddress Broadcast => new(0xffff_ffff_ffff);

    public void CopyTo(Span<byte> destination)
    {
        for (var i = 0; i < 6; i++)
        {
            destination[i] = this[i];
        }
    }

    public static MacAddress FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != 6)
        {
            throw new ArgumentException("a MAC address has 6 bytes", nameof(bytes));
        }
        ulong value = 0;
        foreach (var b in bytes)
        {
            value = (value << 8) | b;
        }
        return new MacAddress(value);
    }

    public static bool TryParse(string text, out MacAddress address)
    {
        address = default;
        var parts = text.Split(':');
        if (parts.Length != 6)
        {
            return false;
        }
        Span<byte> bytes = stackalloc byte[6];
        for (var i = 0; i < 6; i++)
        {
            if (parts[i].Length != 2 || !byte.TryParse(parts[i], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out bytes[i]))
            {
                return false;
            }
        }
        address = FromBytes(bytes);
        return true;
    }

    public override string ToString()
    {
        var value = _value;
        return string.Join(':', Enumerable.Range(0, 6).Select(i => ((byte)(value >> (8 * (5 - i)))).ToString("x2", CultureInfo.InvariantCulture)));
    }
}
