using System.Text;

namespace Lkrun.Services.Metadata;

/// <summary>
/// System Use Sharing Protocol (SUSP 1.10) and Rock Ridge (RRIP 1.09, extension id "RRIP_1991A") entries, which
/// give ISO 9660 directory records POSIX names and modes.
/// </summary>
/// <remarks>
/// Each entry is a two-letter signature, its total length, version 1, then its payload; numbers are recorded in both
/// byte orders as elsewhere in ISO 9660. A reader learns that the image uses SUSP from the SP entry, which must open
/// the system use area of the root directory's "." record, and that it uses Rock Ridge from the ER entry. ER is too
/// long to sit beside SP, RR, PX in a record of at most 255 bytes, so it is written in a continuation area that a
/// CE entry points to. CE comes last in the "." record: go-diskfs, with which LinuxKit's metadata package looks for
/// the CIDATA label, follows a continuation only from there. Every record carries RR (the list of Rock Ridge entries present,
/// required by 1.09 and checked by Linux) and PX (mode, link count, owner); file records add NM, the name exactly
/// as written. PX has the 36-byte 1.09 shape, which is what readers expect together with "RRIP_1991A".
/// </remarks>
internal static class RockRidge
{
    public const string ExtensionId = "RRIP_1991A";
    private const string ExtensionDescriptor = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
    private const string ExtensionSource = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

    private const int PosixAttributesLength = 36;
    private const int ContinuationLength = 28;

    private const uint DirectoryType = 0x4000;
    private const uint RegularFileType = 0x8000;
    private const UnixFileMode ReadOnly = UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
    private const UnixFileMode ReadAndSearch = ReadOnly | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    [Flags]
    private enum Recorded : byte
    {
        PosixAttributes = 0x01,
        Name = 0x08,
    }

    /// <summary>SP, RR, PX and CE for the root directory's "." record; CE points at the <see cref="ExtensionsReference"/>.</summary>
    public static byte[] RootSelf(uint continuationSector, int continuationLength)
    {
        var ce = Entry("CE", ContinuationLength);
        Ecma119.WriteBothByteOrders(ce.AsSpan(4), continuationSector);
        Ecma119.WriteBothByteOrders(ce.AsSpan(12), 0u);
        Ecma119.WriteBothByteOrders(ce.AsSpan(20), (uint)continuationLength);
        return [.. SharingProtocolIndicator(), .. RrFlags(Recorded.PosixAttributes), .. DirectoryAttributes(), .. ce];
    }

    /// <summary>RR and PX for a directory record other than the root's "." (here, its "..").</summary>
    public static byte[] Directory() => [.. RrFlags(Recorded.PosixAttributes), .. DirectoryAttributes()];

    /// <summary>RR, PX and NM for a read-only regular file called <paramref name="name"/>.</summary>
    public static byte[] File(string name)
    {
        var nameBytes = Encoding.ASCII.GetBytes(name);
        var nm = Entry("NM", 5 + nameBytes.Length);
        nm[4] = 0; // no continuation, not "." or ".."
        nameBytes.CopyTo(nm, 5);
        return [.. RrFlags(Recorded.PosixAttributes | Recorded.Name), .. PosixAttributes(RegularFileType | (uint)ReadOnly, links: 1), .. nm];
    }

    /// <summary>The ER entry naming Rock Ridge, written in the continuation area.</summary>
    public static byte[] ExtensionsReference()
    {
        var id = Encoding.ASCII.GetBytes(ExtensionId);
        var descriptor = Encoding.ASCII.GetBytes(ExtensionDescriptor);
        var source = Encoding.ASCII.GetBytes(ExtensionSource);
        var er = Entry("ER", 8 + id.Length + descriptor.Length + source.Length);
        er[4] = (byte)id.Length;
        er[5] = (byte)descriptor.Length;
        er[6] = (byte)source.Length;
        er[7] = 1; // extension version
        id.CopyTo(er, 8);
        descriptor.CopyTo(er, 8 + id.Length);
        source.CopyTo(er, 8 + id.Length + descriptor.Length);
        return er;
    }

    private static byte[] SharingProtocolIndicator()
    {
        var sp = Entry("SP", 7);
        sp[4] = 0xBE;
        sp[5] = 0xEF;
        sp[6] = 0; // no bytes to skip at the start of each system use area
        return sp;
    }

    private static byte[] RrFlags(Recorded recorded)
    {
        var rr = Entry("RR", 5);
        rr[4] = (byte)recorded;
        return rr;
    }

    private static byte[] DirectoryAttributes() => PosixAttributes(DirectoryType | (uint)ReadAndSearch, links: 2);

    private static byte[] PosixAttributes(uint mode, uint links)
    {
        var px = Entry("PX", PosixAttributesLength);
        Ecma119.WriteBothByteOrders(px.AsSpan(4), mode);
        Ecma119.WriteBothByteOrders(px.AsSpan(12), links);
        Ecma119.WriteBothByteOrders(px.AsSpan(20), 0u); // uid root
        Ecma119.WriteBothByteOrders(px.AsSpan(28), 0u); // gid root
        return px;
    }

    private static byte[] Entry(string signature, int length)
    {
        if (length > byte.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"a {signature} entry holds at most 255 bytes");
        }
        var entry = new byte[length];
        entry[0] = (byte)signature[0];
        entry[1] = (byte)signature[1];
        entry[2] = (byte)length;
        entry[3] = 1; // entry version
        return entry;
    }
}
