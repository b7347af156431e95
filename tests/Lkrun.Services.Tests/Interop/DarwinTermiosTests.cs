using System.Runtime.CompilerServices;
using Lkrun.Services.Interop;

namespace Lkrun.Services.Tests.Interop;

/// <summary>macOS's struct termios (apple/darwin-xnu bsd/sys/termios.h) as lkrun lays it out and edits it for raw mode.</summary>
public class DarwinTermiosTests
{
    private static int OffsetOf<T>(ref DarwinTermios termios, ref T field) => (int)Unsafe.ByteOffset(ref Unsafe.As<DarwinTermios, byte>(ref termios), ref Unsafe.As<T, byte>(ref field));

    [Fact]
    public void The_struct_has_macOS_layout_on_64_bit()
    {
        var termios = default(DarwinTermios);
        Assert.Equal(0, OffsetOf(ref termios, ref termios.InputFlags));
        Assert.Equal(8, OffsetOf(ref termios, ref termios.OutputFlags));
        Assert.Equal(16, OffsetOf(ref termios, ref termios.ControlFlags));
        Assert.Equal(24, OffsetOf(ref termios, ref termios.LocalFlags));
        Assert.Equal(32, OffsetOf(ref termios, ref termios.Characters));
        Assert.Equal(20, Unsafe.SizeOf<DarwinTermios.ControlCharacters>());
        Assert.Equal(56, OffsetOf(ref termios, ref termios.InputSpeed));
        Assert.Equal(64, OffsetOf(ref termios, ref termios.OutputSpeed));
        Assert.Equal(72, Unsafe.SizeOf<DarwinTermios>());
        Assert.True(Unsafe.SizeOf<DarwinTermios>() <= TerminalMode.TermiosBufferSize);
    }

    [Fact]
    public void The_constants_are_macOS_own()
    {
        Assert.Equal(0x8u, DarwinTermios.ECHO);
        Assert.Equal(0x100u, DarwinTermios.ICANON);
        Assert.Equal(0x80u, DarwinTermios.ISIG);
        Assert.Equal(0x100u, DarwinTermios.ICRNL);
        Assert.Equal(0x1u, DarwinTermios.OPOST);
        Assert.Equal(16, DarwinTermios.VMIN);
        Assert.Equal(17, DarwinTermios.VTIME);
        Assert.Equal(20, DarwinTermios.ControlCharacterCount);
    }

    /// <summary>A cooked terminal as macOS sets one up (sys/ttydefaults.h TTYDEF_*), made raw.</summary>
    [Fact]
    public void Raw_mode_turns_off_echo_line_editing_signals_and_output_processing_and_keeps_the_rest()
    {
        var termios = new DarwinTermios
        {
            InputFlags = DarwinTermios.BRKINT | DarwinTermios.ICRNL | DarwinTermios.IMAXBEL | DarwinTermios.IXON | 0x800 /* IXANY */,
            OutputFlags = DarwinTermios.OPOST | 0x2 /* ONLCR */,
            ControlFlags = DarwinTermios.CREAD | 0x200 /* CS7 */ | DarwinTermios.PARENB | 0x4000 /* HUPCL */,
            LocalFlags = DarwinTermios.ECHO | DarwinTermios.ICANON | DarwinTermios.ISIG | DarwinTermios.IEXTEN | DarwinTermios.ECHOE | 0x1 /* ECHOKE */ | 0x40 /* ECHOCTL */,
            InputSpeed = 9600,
            OutputSpeed = 9600,
        };
        termios.Characters[DarwinTermios.VMIN] = 4;
        termios.Characters[DarwinTermios.VTIME] = 7;
        termios.Characters[8] = 3; // VINTR, Ctrl-C: kept, but no longer a signal

        DarwinTermios.MakeRaw(ref termios);

        Assert.Equal(0x800u | DarwinTermios.IGNBRK, termios.InputFlags);
        Assert.Equal(0x2u, termios.OutputFlags);
        Assert.Equal(DarwinTermios.CREAD | DarwinTermios.CS8 | 0x4000, termios.ControlFlags);
        Assert.Equal(0x1u | 0x40, termios.LocalFlags);
        Assert.Equal(1, termios.Characters[DarwinTermios.VMIN]);
        Assert.Equal(0, termios.Characters[DarwinTermios.VTIME]);
        Assert.Equal(3, termios.Characters[8]);
        Assert.Equal(9600, termios.InputSpeed);
    }
}
