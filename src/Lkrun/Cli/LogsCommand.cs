using System.CommandLine;
using System.Globalization;
using Lkrun.Services.State;

namespace Lkrun.Cli;

/// <summary>
/// <c>lkrun logs [-f] [-n N] NAME|STATE</c>: the VM's console log (<c>STATE/console.log</c>), the last N lines of
/// it, and with <c>-f</c> what the console prints from then on, as <c>tail -f</c> does, for as long as the VM runs.
/// </summary>
public sealed class LogsCommand
{
    private readonly Argument<string> _target = VmCommand.TargetArgument();
    private readonly Option<bool> _follow = VmCommand.Flag<bool>("follow", "Go on printing what the console prints while the VM runs", alias: "-f");
    private readonly Option<string?> _lines = VmCommand.Flag<string?>("lines", "Print only the last N lines (default: all)", "N", alias: "-n");

    public LogsCommand()
    {
        Command = new Command("logs", "Print a VM's console log (the console of a VM run with --detach or -console-file)");
        Command.Arguments.Add(_target);
        Command.Options.Add(_follow);
        Command.Options.Add(_lines);
        Command.SetAction((result, cancellation) =>
            LogsAsync(result.GetValue(_target)!, result.GetValue(_follow), result.GetValue(_lines), cancellation));
    }

    public Command Command { get; }

    private static async Task<int> LogsAsync(string nameOrState, bool follow, string? linesText, CancellationToken cancellation)
    {
        int? lines = null;
        if (linesText is not null)
        {
            if (!int.TryParse(linesText, NumberStyles.None, CultureInfo.InvariantCulture, out var count))
            {
                return VmCommand.Fail($"-n {linesText}: not a whole number", 2);
            }
            lines = count;
        }
        return await VmCommand.OnTargetAsync(nameOrState, async target =>
        {
            var log = target.Layout.ConsoleLog;
            if (!File.Exists(log))
            {
                return VmCommand.Fail($"{target.Label} has no console log: its console was on the terminal of lkrun run (run it with --detach or -console-file)", 1);
            }
            using var stdout = System.Console.OpenStandardOutput();
            var position = await PrintTailAsync(log, lines, stdout, cancellation);
            while (follow)
            {
                var running = StateDirectory.IsHeld(target.StateDirectory);
                position = await PrintFromAsync(log, position, stdout, cancellation);
                if (!running)
                {
                    break;
                }
                await Task.Delay(VmCommand.PollInterval, cancellation);
            }
            return 0;
        });
    }

    /// <summary>Prints the last <paramref name="lines"/> lines (all when null); returns where the log ended.</summary>
    private static async Task<long> PrintTailAsync(string log, int? lines, Stream output, CancellationToken cancellation)
    {
        await using var file = Open(log);
        var length = file.Length;
        var start = lines is { } count ? StartOfLastLines(file, length, count) : 0;
        file.Position = start;
        await CopyAsync(file, length - start, output, cancellation);
        return length;
    }

    /// <summary>Prints what the log gained since <paramref name="position"/>; a log that shrank was started afresh by a new run.</summary>
    private static async Task<long> PrintFromAsync(string log, long position, Stream output, CancellationToken cancellation)
    {
        await using var file = Open(log);
        var length = file.Length;
        if (length < position)
        {
            position = 0;
        }
        file.Position = position;
        await CopyAsync(file, length - position, output, cancellation);
        return length;
    }

    private static FileStream Open(string log) => new(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);

    private static async Task CopyAsync(Stream from, long count, Stream to, CancellationToken cancellation)
    {
        var buffer = new byte[64 * 1024];
        while (count > 0)
        {
            var read = await from.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, count)), cancellation);
            if (read == 0)
            {
                break;
            }
            await to.WriteAsync(buffer.AsMemory(0, read), cancellation);
            count -= read;
        }
        await to.FlushAsync(cancellation);
    }

    /// <summary>The offset where the last <paramref name="lines"/> lines of the file begin, reading backwards in blocks.</summary>
    public static long StartOfLastLines(Stream file, long length, int lines)
    {
        if (lines == 0)
        {
            return length;
        }
        var buffer = new byte[8192];
        var position = length;
        // A final newline ends the last line; it does not start an empty one.
        var skipFinalNewline = true;
        var found = 0;
        while (position > 0)
        {
            var size = (int)Math.Min(buffer.Length, position);
            position -= size;
            file.Position = position;
            file.ReadExactly(buffer, 0, size);
            for (var i = size - 1; i >= 0; i--)
            {
                if (buffer[i] != (byte)'\n')
                {
                    skipFinalNewline = false;
                    continue;
                }
                if (skipFinalNewline)
                {
                    skipFinalNewline = false;
                    continue;
                }
                if (++found == lines)
                {
                    return position + i + 1;
                }
            }
        }
        return 0;
    }
}
