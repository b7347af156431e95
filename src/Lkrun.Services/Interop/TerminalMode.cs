using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Lkrun.Services.Interop;

/// <summary>
/// termios calls to switch a terminal into raw mode and back. Settings travel as the bytes of the system's own
/// <c>struct termios</c>: on Linux glibc's <c>cfmakeraw</c> edits them; on macOS lkrun edits
/// <see cref="DarwinTermios"/> itself, a layout it knows and tests on any host.
/// </summary>
internal static partial class TerminalMode
{
    // Linux's struct termios is 60 bytes and macOS's 72; 256 leaves room for other libcs without knowing the layout.
    public const int TermiosBufferSize = 256;
    private const int SetNow = 0;

    public static bool IsTerminal(int fd) => isatty(fd) == 1;

    /// <summary>Saves the current settings of <paramref name="fd"/>; null when it is not a terminal.</summary>
    public static byte[]? Save(int fd)
    {
        var saved = new byte[TermiosBufferSize];
        return tcgetattr(fd, saved) == 0 ? saved : null;
    }

    public static void MakeRaw(int fd, byte[] saved)
    {
        var raw = (byte[])saved.Clone();
        if (OperatingSystem.IsMacOS())
        {
            DarwinTermios.MakeRaw(ref MemoryMarshal.AsRef<DarwinTermios>(raw.AsSpan(0, Unsafe.SizeOf<DarwinTermios>())));
        }
        else
        {
            cfmakeraw(raw);
        }
        if (tcsetattr(fd, SetNow, raw) != 0)
        {
            throw new IOException($"cannot put the terminal into raw mode: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
    }

    public static void Restore(int fd, byte[] saved) => tcsetattr(fd, SetNow, saved);

    /// <summary>The terminal's height in rows, or null when <paramref name="fd"/> is not a terminal or does not say.</summary>
    public static int? Rows(int fd)
    {
        // struct winsize: rows, columns, then the pixel sizes, each an unsigned short.
        var size = new ushort[4];
        nuint request = OperatingSystem.IsMacOS() ? 0x40087468u : 0x5413u;
        return ioctl(fd, request, size) == 0 && size[0] > 0 ? size[0] : null;
    }

    [LibraryImport("libc")]
    private static partial int isatty(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int tcgetattr(int fd, [Out] byte[] termios);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int tcsetattr(int fd, int optionalActions, byte[] termios);

    [LibraryImport("libc")]
    private static partial void cfmakeraw([In, Out] byte[] termios);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, nuint request, [Out] ushort[] windowSize);
}

/// <summary>
/// macOS's <c>struct termios</c> (apple/darwin-xnu bsd/sys/termios.h): four <c>tcflag_t</c> flag words, which are
/// <c>unsigned long</c> (8 bytes on 64-bit), <c>NCCS</c> = 20 control characters, then two <c>speed_t</c>
/// (<c>long</c>) speeds after 4 bytes of padding: 72 bytes in all.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DarwinTermios
{
    public const int ControlCharacterCount = 20;

    // c_iflag
    public const nuint IGNBRK = 0x1, BRKINT = 0x2, IGNPAR = 0x4, PARMRK = 0x8, INPCK = 0x10, ISTRIP = 0x20, INLCR = 0x40, IGNCR = 0x80, ICRNL = 0x100, IXON = 0x200, IXOFF = 0x400, IMAXBEL = 0x2000;

    // c_oflag
    public const nuint OPOST = 0x1;

    // c_cflag
    public const nuint CSIZE = 0x300, CS8 = 0x300, CREAD = 0x800, PARENB = 0x1000;

    // c_lflag
    public const nuint ECHOE = 0x2, ECHOK = 0x4, ECHO = 0x8, ECHONL = 0x10, ISIG = 0x80, ICANON = 0x100, IEXTEN = 0x400, TOSTOP = 0x400000, PENDIN = 0x20000000, NOFLSH = 0x80000000;

    // c_cc indexes
    public const int VMIN = 16, VTIME = 17;

    public nuint InputFlags;
    public nuint OutputFlags;
    public nuint ControlFlags;
    public nuint LocalFlags;
    public ControlCharacters Characters;
    public nint InputSpeed;
    public nint OutputSpeed;

    [InlineArray(ControlCharacterCount)]
    public struct ControlCharacters
    {
        private byte _first;
    }

    /// <summary>
    /// Raw mode as BSD's <c>cfmakeraw</c> sets it: bytes pass unchanged both ways, one at a time, with no echo, no
    /// line editing, no signals from keys (Ctrl-C goes to the guest) and no output processing.
    /// </summary>
    public static void MakeRaw(ref DarwinTermios termios)
    {
        termios.InputFlags &= ~(IMAXBEL | IXOFF | INPCK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IGNPAR);
        termios.InputFlags |= IGNBRK;
        termios.OutputFlags &= ~OPOST;
        termios.LocalFlags &= ~(ECHO | ECHOE | ECHOK | ECHONL | ICANON | ISIG | IEXTEN | NOFLSH | TOSTOP | PENDIN);
        termios.ControlFlags &= ~(CSIZE | PARENB);
        termios.ControlFlags |= CS8 | CREAD;
        termios.Characters[VMIN] = 1;
        termios.Characters[VTIME] = 0;
    }
}
