using System.Text;
using Lkrun.Services.Console;

namespace Lkrun.Services.Tests.Console;

public class EscapeKeysTests
{
    private static (string ToGuest, List<ConsoleCommand> Commands) Type(EscapeKeys keys, string typed)
    {
        var input = Encoding.Latin1.GetBytes(typed);
        var output = new byte[input.Length + 1];
        var commands = new List<ConsoleCommand>();
        var count = keys.Filter(input, output, commands.Add);
        return (Encoding.Latin1.GetString(output, 0, count), commands);
    }

    [Theory]
    [InlineData("ls -l\r", "ls -l\r")]
    [InlineData("\u0001a", "\u0001")]
    [InlineData("\u0001\u0001", "\u0001")]
    [InlineData("\u0001z", "\u0001z")]
    [InlineData("a\u0003b", "a\u0003b")]
    public void Ordinary_keys_pass_through(string typed, string expected)
    {
        var (toGuest, commands) = Type(new EscapeKeys(), typed);
        Assert.Equal(expected, toGuest);
        Assert.Empty(commands);
    }

    [Theory]
    [InlineData("\u0001x", ConsoleCommand.StopVm)]
    [InlineData("\u0001p", ConsoleCommand.PowerButton)]
    [InlineData("\u0001h", ConsoleCommand.Help)]
    [InlineData("\u0001?", ConsoleCommand.Help)]
    public void Ctrl_a_commands_are_recognised_and_not_sent(string typed, ConsoleCommand expected)
    {
        var (toGuest, commands) = Type(new EscapeKeys(), "ab" + typed + "cd");
        Assert.Equal("abcd", toGuest);
        Assert.Equal([expected], commands);
    }

    [Fact]
    public void A_sequence_split_across_reads_is_still_recognised()
    {
        var keys = new EscapeKeys();
        var (first, none) = Type(keys, "echo\u0001");
        var (second, commands) = Type(keys, "x");
        Assert.Equal("echo", first);
        Assert.Empty(none);
        Assert.Equal("", second);
        Assert.Equal([ConsoleCommand.StopVm], commands);
    }

    [Fact]
    public void Ctrl_a_d_detaches_an_attached_console_and_goes_to_the_guest_on_lkrun_runs_own()
    {
        var (attached, attachedCommands) = Type(new EscapeKeys(detachable: true), "ab\u0001dcd");
        Assert.Equal("abcd", attached);
        Assert.Equal([ConsoleCommand.Detach], attachedCommands);

        var (own, ownCommands) = Type(new EscapeKeys(), "ab\u0001dcd");
        Assert.Equal("ab\u0001dcd", own);
        Assert.Empty(ownCommands);
    }
}
