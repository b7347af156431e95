using Lkrun.Engines.Qemu;
using Lkrun.Engines.Vz;
using Lkrun.Spec;

namespace Lkrun.Engines;

/// <summary>The engine a spec asks for.</summary>
public static class EngineFactory
{
    public static IVmEngine For(EngineSpec engine) => engine switch
    {
        QemuEngineSpec qemu => new QemuEngine(qemu),
        VirtualizationFrameworkEngineSpec => new VirtualizationFrameworkEngine(),
        _ => throw new ArgumentException($"no engine for {engine.GetType().Name}", nameof(engine)),
    };
}
