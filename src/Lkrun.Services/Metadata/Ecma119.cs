using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Lkrun.Services.Metadata;

/// <summary>
/// Field encodings of ECMA-119 (ISO 9660): numbers recorded in both byte orders, the two date formats and
/// identifiers padded to their field width. Section numbers refer to ECMA-119 4th edition.
/// </summary>
internal static class Ecma119
{
    public const int SectorSize = 2048;

    /// <summary>7.3.3: a 16-bit number little-endian, then the same number big-endian.</summary>
    public static void WriteBothByteOrders(Span<byte> field, ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(field, value);
        BinaryPrimitives.WriteUInt16BigEndian(field[2..], value);
    }

    /// <summary>7.3.3: a 32-bit number little-endian, then the same number big-endian.</summary>
    public static void WriteBothByteOrders(Span<byte> field, uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(field, value);
        BinaryPrimitives.WriteUInt32BigEndian(field[4..], value);
    }

    /// <summary>8.4.26.1: sixteen digits YYYYMMDDHHMMSScc, then the offset from UTC in 15-minute steps.</summary>
    public static void WriteVolumeDate(Span<byte> field, DateTimeOffset time)
    {
        CheckRecordable(time);
        var digits = string.Create(
            CultureInfo.InvariantCulture,
            $"{time.Year:D4}{time.Month:D2}{time.Day:D2}{time.Hour:D2}{time.Minute:D2}{time.Second:D2}{time.Millisecond / 10:D2}");
        Encoding.ASCII.GetBytes(digits, field[..16]);
        field[16] = OffsetQuarterHours(time);
    }

    /// <summary>8.4.26.1: "not specified" is sixteen '0' digits and a zero offset.</summary>
    public static void WriteUnspecifiedVolumeDate(Span<byte> field)
    {
        field[..16].Fill((byte)'0');
        field[16] = 0;
    }

    /// <summary>9.1.5: seven bytes: years since 1900, month, day, hour, minute, second, offset from UTC.</summary>
    public static void WriteRecordingDate(Span<byte> field, DateTimeOffset time)
    {
        CheckRecordable(time);
        field[0] = (byte)(time.Year - 1900);
        field[1] = (byte)time.Month;
        field[2] = (byte)time.Day;
        field[3] = (byte)time.Hour;
        field[4] = (byte)time.Minute;
        field[5] = (byte)time.Second;
        field[6] = OffsetQuarterHours(time);
    }

    /// <summary>An a- or d-character identifier, left-aligned and filled with spaces (7.4).</summary>
    public static void WriteText(Span<byte> field, string text)
    {
        field.Fill((byte)' ');
        Encoding.ASCII.GetBytes(text, field);
    }

    /// <summary>
    /// A Joliet identifier: UCS-2 big-endian, filled with UCS-2 spaces. An odd-width field (the 37-byte file
    /// identifiers) keeps its last byte zero, since no whole character fits there.
    /// </summary>
    public static void WriteUcs2Text(Span<byte> field, string text)
    {
        field.Clear();
        for (var i = 1; i < field.Length; i += 2)
        {
            field[i] = (byte)' ';
        }
        Encoding.BigEndianUnicode.GetBytes(text, field);
    }

    private static byte OffsetQuarterHours(DateTimeOffset time) => (byte)(sbyte)(time.Offset.TotalMinutes / 15);

    private static void CheckRecordable(DateTimeOffset time)
    {
        // The seven-byte recording date counts years from 1900 in one byte.
        if (time.Year is < 1900 or > 2155)
        {
            throw new ArgumentOutOfRangeException(nameof(time), time, "ISO 9660 records years 1900 to 2155 only");
        }
    }
}
