using Lkrun.Cli;
using Lkrun.Spec;

namespace Lkrun;

/// <summary>Runs one VM: spec, host services, engine, and the lifecycle around them.</summary>
public static class VmLauncher
{
    public static Task<int> RunAsync(RunOptions options, CancellationToken cancellation)
    {
        try
        {
            var spec = SpecMapper.ToSpec(options);
            Console.Out.WriteLine(VmSpecJson.Serialize(spec));
            return Task.FromResult(0);
        }
        catch (SpecException e)
        {
            Console.Error.WriteLine($"lkrun: {e.Message}");
            return Task.FromResult(e.ExitCode);
        }
    }
}
