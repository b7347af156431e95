using System.CommandLine;
using System.CommandLine.Parsing;
using Lkrun.Cli;
using Lkrun.Services.Hosting;
using Lkrun.Spec;

namespace Lkrun;

public static class Program
{
    public static int Main(string[] args)
    {
        if (DetachedStart.IsRunner)
        {
            Detachment.WriteConsoleToStandardDescriptors();
        }
        var root = new RootCommand("lkrun runs LinuxKit images as local virtual machines.");
        var run = new RunCommand((options, cancellation) => RunAsync(options, args, cancellation));
        root.Subcommands.Add(run.Command);
        root.Subcommands.Add(new PsCommand().Command);
        root.Subcommands.Add(new StopCommand().Command);
        root.Subcommands.Add(new ConsoleAttachCommand().Command);
        root.Subcommands.Add(new LogsCommand().Command);
        root.Subcommands.Add(new RmCommand().Command);
        root.Subcommands.Add(new MetadataCommand().Command);
        root.Subcommands.Add(new NetworkCommand().Command);

        var result = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (result.Errors.Count > 0)
        {
            Console.Error.WriteLine($"lkrun: {DescribeFirstError(result)}; see '{CommandPath(result)} --help'");
            return 2;
        }
        // lkrun turns SIGINT and SIGTERM into a clean guest shutdown itself, so the parser must not handle them.
        return result.Invoke(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }

    private static async Task<int> RunAsync(RunOptions options, IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var runner = options.Detach && DetachedStart.IsRunner;
        if (runner)
        {
            Detachment.LeaveTerminal();
        }
        VmSpec spec;
        try
        {
            spec = SpecMapper.ToSpec(options);
        }
        catch (SpecException e)
        {
            Console.Error.WriteLine($"lkrun: {e.Message}");
            return e.ExitCode;
        }
        if (options.Detach && !runner)
        {
            return await DetachedStart.RunAsync(args);
        }
        return await VmLauncher.RunAsync(spec, new LaunchOptions(options.Name, Detached: runner), cancellation);
    }

    private static string DescribeFirstError(ParseResult result)
    {
        // An unknown flag can land in the prefix argument, so look for it among every token first.
        var unknownFlag = result.Tokens.FirstOrDefault(t => t.Type == TokenType.Argument && t.Value.Length > 1 && t.Value.StartsWith('-'));
        if (unknownFlag is not null)
        {
            return $"unknown flag {unknownFlag.Value}";
        }
        var unmatched = result.UnmatchedTokens.FirstOrDefault();
        if (unmatched is not null)
        {
            return $"unexpected argument '{unmatched}'";
        }
        var error = result.Errors[0];
        return error.SymbolResult switch
        {
            ArgumentResult { Argument.Name: "prefix" } => "missing the image prefix",
            OptionResult option when option.Tokens.Count == 0 => $"{option.IdentifierToken?.Value ?? option.Option.Name} needs a value",
            _ => error.Message.TrimEnd('.'),
        };
    }

    private static string CommandPath(ParseResult result)
    {
        var names = new List<string>();
        for (SymbolResult? symbol = result.CommandResult; symbol is not null; symbol = symbol.Parent)
        {
            if (symbol is CommandResult command)
            {
                names.Insert(0, command.Command is RootCommand ? "lkrun" : command.Command.Name);
            }
        }
        return string.Join(' ', names);
    }
}
