using System.Runtime.InteropServices;

namespace Lkrun.Services.Interop;

/// <summary>
/// libslirp's C API (libslirp.h of libslirp 4.7), the user-mode TCP/IP stack QEMU's user networking is built on.
/// A Slirp instance is not thread-safe: every call, and every callback it makes, happens on one thread.
/// </summary>
internal static unsafe partial class LibSlirp
{
    /// <summary>The library's name on Linux; on macOS the imports resolve to Homebrew's <c>libslirp.0.dylib</c>.</summary>
    public const string LibraryName = "libslirp.so.0";

    /// <summary>Where libslirp is found on macOS: wherever the loader looks, then Homebrew's prefixes (Apple silicon, Intel).</summary>
    private static readonly string[] MacOSCandidates = ["libslirp.0.dylib", "/opt/homebrew/lib/libslirp.0.dylib", "/usr/local/lib/libslirp.0.dylib"];

    static LibSlirp()
    {
        if (OperatingSystem.IsMacOS())
        {
            NativeLibrary.SetDllImportResolver(typeof(LibSlirp).Assembly, (name, _, _) =>
                name == LibraryName && TryLoad(out var handle) ? handle : 0);
        }
    }

    /// <summary>How to install libslirp on this system, for the message that says it is missing.</summary>
    public static string InstallHint => OperatingSystem.IsMacOS() ? "brew install libslirp" : "Debian/Ubuntu: apt-get install libslirp0";

    /// <summary>Loads libslirp as the imports below will: false when this system has none.</summary>
    public static bool TryLoad(out nint handle)
    {
        handle = 0;
        foreach (var candidate in OperatingSystem.IsMacOS() ? MacOSCandidates : [LibraryName])
        {
            if (NativeLibrary.TryLoad(candidate, out handle))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The SlirpConfig version whose fields <see cref="SlirpConfig"/> has (disable_dhcp came with 4.7).</summary>
    public const uint ConfigVersion = 4;

    public const int PollIn = 1 << 0;
    public const int PollOut = 1 << 1;
    public const int PollPri = 1 << 2;
    public const int PollErr = 1 << 3;
    public const int PollHup = 1 << 4;

    [LibraryImport(LibraryName, EntryPoint = "slirp_new")]
    public static partial nint New(SlirpConfig* config, SlirpCallbacks* callbacks, nint opaque);

    [LibraryImport(LibraryName, EntryPoint = "slirp_cleanup")]
    public static partial void Cleanup(nint slirp);

    [LibraryImport(LibraryName, EntryPoint = "slirp_pollfds_fill")]
    public static partial void PollFdsFill(nint slirp, uint* timeoutMilliseconds, delegate* unmanaged<int, int, nint, int> addPoll, nint opaque);

    [LibraryImport(LibraryName, EntryPoint = "slirp_pollfds_poll")]
    public static partial void PollFdsPoll(nint slirp, int selectError, delegate* unmanaged<int, nint, int> getREvents, nint opaque);

    [LibraryImport(LibraryName, EntryPoint = "slirp_input")]
    public static partial void Input(nint slirp, byte* packet, int length);

    [LibraryImport(LibraryName, EntryPoint = "slirp_handle_timer")]
    public static partial void HandleTimer(nint slirp, int timerId, nint callbackOpaque);

    /// <summary>in_addr arguments are the address's four bytes in network order, as a native 32-bit value.</summary>
    [LibraryImport(LibraryName, EntryPoint = "slirp_add_hostfwd", SetLastError = true)]
    public static partial int AddHostForward(nint slirp, int isUdp, uint hostAddress, int hostPort, uint guestAddress, int guestPort);

    [LibraryImport(LibraryName, EntryPoint = "slirp_remove_hostfwd")]
    public static partial int RemoveHostForward(nint slirp, int isUdp, uint hostAddress, int hostPort);

    [LibraryImport(LibraryName, EntryPoint = "slirp_version_string")]
    public static partial byte* VersionString();
}

/// <summary>
/// struct SlirpConfig of libslirp.h, version 4, for LP64 (x86_64 and arm64 Linux): C's bool is one byte,
/// struct in_addr four, struct in6_addr sixteen, size_t and pointers eight. Sequential layout lays the fields out
/// as the C compiler does; the tests check each offset against the header.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SlirpConfig
{
    public uint Version;
    public int Restricted;
    public byte InEnabled;
    public uint VNetwork;
    public uint VNetmask;
    public uint VHost;
    public byte In6Enabled;
    public In6Address VPrefixAddr6;
    public byte VPrefixLength;
    public In6Address VHost6;
    public byte* VHostName;
    public byte* TftpServerName;
    public byte* TftpPath;
    public byte* BootFile;
    public uint VDhcpStart;
    public uint VNameServer;
    public In6Address VNameServer6;
    public byte** VDnsSearch;
    public byte* VDomainName;
    public nuint IfMtu;
    public nuint IfMru;
    public byte DisableHostLoopback;
    public byte EnableEmu;
    public void* OutboundAddr;
    public void* OutboundAddr6;
    public byte DisableDns;
    public byte DisableDhcp;
}

/// <summary>struct in6_addr: 16 bytes, 4-byte aligned as glibc declares it (a union with uint32_t[4]).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct In6Address
{
    public uint Word0;
    public uint Word1;
    public uint Word2;
    public uint Word3;
}

/// <summary>struct SlirpCb of libslirp.h: the callbacks slirp makes, each given the opaque pointer of slirp_new.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SlirpCallbacks
{
    public delegate* unmanaged<byte*, nuint, nint, nint> SendPacket;
    public delegate* unmanaged<byte*, nint, void> GuestError;
    public delegate* unmanaged<nint, long> ClockGetNs;
    public void* TimerNew;
    public delegate* unmanaged<nint, nint, void> TimerFree;
    public delegate* unmanaged<nint, long, nint, void> TimerMod;
    public delegate* unmanaged<int, nint, void> RegisterPollFd;
    public delegate* unmanaged<int, nint, void> UnregisterPollFd;
    public delegate* unmanaged<nint, void> Notify;
    public void* InitCompleted;
    public delegate* unmanaged<int, nint, nint, nint> TimerNewOpaque;
}
