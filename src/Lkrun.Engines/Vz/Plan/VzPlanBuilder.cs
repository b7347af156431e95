using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Spec;

namespace Lkrun.Engines.Vz.Plan;

/// <summary>
/// Collects the steps of a plan. Each step's minimum macOS comes from the catalogue (the newest of its class and
/// selector), and its source defaults to the header of its selector; a step that follows a policy of lkrun's own
/// or of a reference implementation names that instead.
/// </summary>
internal sealed class VzPlanBuilder(MacOSVersion host)
{
    private readonly List<VzStep> _steps = [];

    public MacOSVersion Host { get; } = host;

    public bool HostHas(MacOSVersion version) => Host >= version;

    /// <summary><c>[[cls alloc] initializer args…]</c> as <paramref name="name"/>; returns a reference to it.</summary>
    public VzObjectRef Create(string name, string cls, string initializer, string subject, string? source = null, params VzArgument[] arguments)
    {
        var minimum = MacOSVersion.Max(VzCatalogue.Class(cls).Minimum, VzCatalogue.Selector(initializer).Minimum);
        _steps.Add(new VzCreate(name, cls, initializer, new(arguments))
        {
            Minimum = minimum,
            Source = source ?? VzCatalogue.Selector(initializer).Source,
            Subject = subject,
        });
        return new VzObjectRef(name);
    }

    public void Send(VzObjectRef receiver, string selector, string subject, string? source = null, params VzArgument[] arguments) =>
        _steps.Add(new VzSend(receiver, selector, new(arguments))
        {
            Minimum = VzCatalogue.Selector(selector).Minimum,
            Source = source ?? VzCatalogue.Selector(selector).Source,
            Subject = subject,
        });

    /// <summary>A validation the framework offers before a call that would raise for the same input.</summary>
    public void Check(VzArgument receiver, string selector, string subject, params VzArgument[] arguments)
    {
        var minimum = VzCatalogue.Selector(selector).Minimum;
        if (receiver is VzClassRef cls)
        {
            minimum = MacOSVersion.Max(minimum, VzCatalogue.Class(cls.Class).Minimum);
        }
        _steps.Add(new VzCheck(receiver, selector, new(arguments))
        {
            Minimum = minimum,
            Source = VzCatalogue.Selector(selector).Source,
            Subject = subject,
        });
    }

    public VzObjectRef Array(string name, IEnumerable<VzObjectRef> items, string subject)
    {
        _steps.Add(new VzArray(name, new(items.Select(item => item.Name)))
        {
            Minimum = VzCatalogue.Selector("arrayWithObjects:count:").Minimum,
            Source = VzCatalogue.Selector("arrayWithObjects:count:").Source,
            Subject = subject,
        });
        return new VzObjectRef(name);
    }

    /// <summary>Sets a configuration's device list (<c>setStorageDevices:</c> and friends) to <paramref name="devices"/>.</summary>
    public void SetDevices(VzObjectRef configuration, string setter, IReadOnlyList<VzObjectRef> devices, string subject)
    {
        if (devices.Count == 0)
        {
            return;
        }
        var name = char.ToLowerInvariant(setter[3]) + setter[4..^1];
        Send(configuration, setter, subject, null, Array(name, devices, subject));
    }

    public void SaveData(VzObjectRef receiver, string selector, string path, string subject, string source) =>
        _steps.Add(new VzSaveData(receiver, selector, path)
        {
            Minimum = VzCatalogue.Selector(selector).Minimum,
            Source = source,
            Subject = subject,
        });

    public VzPlan Build(int? networkMtu)
    {
        var plan = new VzPlan(new(_steps)) { NetworkMtu = networkMtu };
        var tooNew = plan.Steps.FirstOrDefault(step => step.Minimum > Host);
        if (tooNew is not null)
        {
            throw new EngineException(
                $"{tooNew.Subject}: needs macOS {tooNew.Minimum} or newer with the virtualization.framework backend; this Mac runs {Host}",
                exitCode: 2);
        }
        return plan;
    }
}
