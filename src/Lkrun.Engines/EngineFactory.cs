using Lkrun.Engines.Qemu;
using Lkrun.Engines.Vz;
using Lkrun.Spec;

namespace Lkrun.Engines;

/// <summary>The engine a spec asks for.</summary>
public static class EngineFactory
{
    /// <param name="notice">Where an engine reports what happens to a running VM that the user should hear of.</param>
    public static IVmEngine For(EngineSpec engine, Action<string> notice) => engine switch
    {
        QemuEngineSpec qemu => new QemuEngine(qemu),
        VirtualizationFrameworkEngineSpec => new VirtualizationFrameworkEngine(VzHostFacts.Current, notice),
        _ => throw new ArgumentException($"no engine for {engine.GetType().Name}", nameof(engine)),
    };
}
