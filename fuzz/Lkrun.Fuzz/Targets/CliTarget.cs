using System.CommandLine;
using System.Text;
using Lkrun.Cli;
using Lkrun.Spec;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// Flags of <c>lkrun run</c> (one argument per line or NUL, the image prefix added last) through the command line parser
/// and the mapper to a <see cref="VmSpec"/>: a refusal is a <see cref="SpecException"/> (one line, naming the flag),
/// never another exception, and a spec it accepts passes validation and round-trips through its JSON form.
/// </summary>
internal sealed class CliTarget : IFuzzTarget
{
    private readonly string _prefix;
    private readonly RootCommand _root = new();
    private RunOptions? _captured;

    public CliTarget()
    {
        var directory = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "lkrun-fuzz-cli")).FullName;
        _prefix = Path.Combine(directory, "img");
        foreach (var suffix in new[] { "-kernel", "-initrd.img", "-cmdline" })
        {
            File.WriteAllText(_prefix + suffix, "console=ttyS0");
        }
        _root.Subcommands.Add(new RunCommand((options, _) =>
        {
            _captured = options;
            return Task.FromResult(0);
        }).Command);
    }

    public IEnumerable<byte[]> Seeds()
    {
        string[][] commands =
        [
            ["-mem", "512", "-cpus", "2"],
            ["qemu", "-disk", "size=1G", "--disk=file=/tmp/lkrun-fuzz-cli/d.img,size=64M,format=qcow2", "-publish", "2222:22", "-publish=127.0.0.1:8080:80/udp"],
            ["-vsock-ports", "1,2,0x10", "-ip", "192.168.65.9", "-networking", "default", "--stop-timeout", "2m"],
            ["vz", "-networking", "vznat", "-virtiofs", "/tmp,tag=t,ro", "-data", "hello"],
            ["-machine", "microvm", "-kernel-entry", "pvh", "-kernel", "-console-file", "-state", "/tmp/lkrun-fuzz-cli/s"],
            ["-iso", "-uefi", "-fw", "/nonexistent"],
        ];
        return commands.Select(args => Encoding.UTF8.GetBytes(string.Join('\n', args)));
    }

    /// <summary>The spec for <paramref name="input"/>'s flags, or null when they are refused.</summary>
    public static VmSpec? TrySpec(CliTarget target, ReadOnlySpan<byte> input)
    {
        try
        {
            return target.Options(input) is { } options ? SpecMapper.ToSpec(options) : null;
        }
        catch (SpecException)
        {
            return null;
        }
    }

    private RunOptions? Options(ReadOnlySpan<byte> input)
    {
        // A NUL ends an argument, as in the argv that execve hands over: no real argument holds one.
        var arguments = Encoding.UTF8.GetString(input).Split(['\n', '\0']).Take(32);
        // Parsed as Program.Main parses: "@file" is an argument, not a response file to read.
        var result = _root.Parse(["run", .. arguments, _prefix], new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (result.Errors.Count != 0 || result.Action is null)
        {
            return null;
        }
        _captured = null;
        result.Invoke(new InvocationConfiguration { Output = TextWriter.Null, Error = TextWriter.Null, EnableDefaultExceptionHandler = false });
        return _captured; // null after --help and the like
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length > 4096 || Options(input) is not { } options)
        {
            return;
        }
        VmSpec spec;
        try
        {
            spec = SpecMapper.ToSpec(options);
        }
        catch (SpecException e)
        {
            Check.That(!e.Message.Contains('\n'), "a refusal is one line");
            return;
        }
        VmSpecValidator.Validate(spec);
        var json = VmSpecJson.Serialize(spec);
        Check.That(VmSpecJson.Deserialize(json) == spec, "the spec round-trips through JSON");
    }
}
