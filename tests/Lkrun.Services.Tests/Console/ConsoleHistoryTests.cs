using System.Text;
using Lkrun.Services.Console;

namespace Lkrun.Services.Tests.Console;

public class ConsoleHistoryTests
{
    private static string LastLines(ConsoleHistory history, int lines) => Encoding.ASCII.GetString(history.LastLines(lines));

    [Fact]
    public void The_last_lines_are_those_at_the_end_whether_or_not_the_last_is_finished()
    {
        var history = new ConsoleHistory();
        history.Append("one\ntwo\nthree\n"u8);
        Assert.Equal("two\nthree\n", LastLines(history, 2));
        history.Append("prompt# "u8);
        Assert.Equal("three\nprompt# ", LastLines(history, 2));
        Assert.Equal("one\ntwo\nthree\nprompt# ", LastLines(history, 10));
        Assert.Equal("prompt# ", LastLines(history, 1));
    }

    [Fact]
    public void Only_the_last_bytes_are_kept_across_the_ring_wrapping_around()
    {
        var history = new ConsoleHistory(capacity: 16);
        history.Append("0123456789\n"u8);
        history.Append("abcdefghij\n"u8);
        Assert.Equal("6789\nabcdefghij\n", LastLines(history, 100));
        Assert.Equal("abcdefghij\n", LastLines(history, 1));
        history.Append(Encoding.ASCII.GetBytes(new string('z', 40)));
        Assert.Equal(new string('z', 16), LastLines(history, 3));
    }

    [Fact]
    public void Nothing_printed_yet_gives_nothing()
    {
        Assert.Empty(new ConsoleHistory().LastLines(24));
    }
}
