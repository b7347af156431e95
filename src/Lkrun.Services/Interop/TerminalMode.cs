using System.Runtime.InteropServices;

namespace Lkrun.Services.Interop;

/// <summary>termios calls to switch a terminal into raw mode and back.</summary>
internal static partial class TerminalMode
{
    // Linux's struct termios is 60 bytes; 256 leaves room for other libcs without knowing the layout.
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
        cfmakeraw(raw);
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
