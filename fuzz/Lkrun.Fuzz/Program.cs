using SharpFuzz;

namespace Lkrun.Fuzz;

/// <summary>
/// <c>Lkrun.Fuzz TARGET</c> runs one target under AFL (input on stdin, SharpFuzz's fork server);
/// <c>Lkrun.Fuzz TARGET FILE|DIR...</c> runs it once per file, without AFL, to reproduce a finding;
/// <c>Lkrun.Fuzz --seeds DIR</c> writes every target's seeds to DIR/TARGET/; <c>Lkrun.Fuzz --list</c> names them.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        if (args is ["--list"])
        {
            foreach (var name in FuzzTargets.Names)
            {
                Console.WriteLine(name);
            }
            return 0;
        }
        if (args is ["--seeds", var directory])
        {
            WriteSeeds(directory);
            return 0;
        }
        if (args.Length == 0 || !FuzzTargets.Names.Contains(args[0]))
        {
            Console.Error.WriteLine($"usage: Lkrun.Fuzz TARGET [FILE|DIR...] | --seeds DIR | --list; targets: {string.Join(", ", FuzzTargets.Names)}");
            return 2;
        }
        if (args.Length == 1)
        {
            // Instrumented code may run only inside Fuzzer.Run, once SharpFuzz has mapped AFL's shared memory: the
            // target (whose constructor may call into lkrun) is made there, on the first input.
            IFuzzTarget? fuzzed = null;
            Fuzzer.Run(stream =>
            {
                using var buffer = new MemoryStream();
                stream.CopyTo(buffer);
                fuzzed ??= FuzzTargets.Create(args[0])!;
                fuzzed.Run(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
            });
            return 0;
        }
        var target = FuzzTargets.Create(args[0])!;
        foreach (var file in args.Skip(1).SelectMany(path => Directory.Exists(path) ? Directory.GetFiles(path) : [path]).Order(StringComparer.Ordinal))
        {
            target.Run(File.ReadAllBytes(file));
        }
        return 0;
    }

    private static void WriteSeeds(string directory)
    {
        foreach (var name in FuzzTargets.Names)
        {
            var folder = Directory.CreateDirectory(Path.Combine(directory, name)).FullName;
            var index = 0;
            foreach (var seed in FuzzTargets.Create(name)!.Seeds())
            {
                File.WriteAllBytes(Path.Combine(folder, $"seed-{index++:D2}"), seed);
            }
        }
    }
}
