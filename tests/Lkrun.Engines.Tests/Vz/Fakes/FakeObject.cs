namespace Lkrun.Engines.Tests.Vz.Fakes;

/// <summary>
/// An Objective-C object of the fake runtime. It is alive while the code under test owns a reference to it
/// (<see cref="Owned"/>: alloc/init, retain, the Create… methods), while another live object or the simulated
/// framework holds it (<see cref="Held"/>), or while it sits in an autorelease pool that has not drained.
/// </summary>
internal sealed class FakeObject(nint handle, string cls, bool isClass, string origin)
{
    public nint Handle { get; } = handle;

    public string Class { get; } = cls;

    public bool IsClass { get; } = isClass;

    /// <summary>How the object came to be (the selector or call that made it), for leak reports.</summary>
    public string Origin { get; } = origin;

    public int Owned { get; set; }

    public int Held { get; set; }

    public int? Pool { get; set; }

    public bool Dead { get; set; }

    public bool Initialized { get; set; }

    /// <summary>The objects this one holds strongly (arguments it was made or configured with, array items).</summary>
    public List<FakeObject> References { get; } = [];

    /// <summary>What setters and initializers stored, by selector.</summary>
    public Dictionary<string, object?> Properties { get; } = new(StringComparer.Ordinal);

    /// <summary>The Foundation value: a string, a path, a list of objects, bytes, or an error.</summary>
    public object? Value { get; set; }

    /// <summary>For file handles and vsock connections: the descriptor and whether the object closes it.</summary>
    public int? Descriptor { get; set; }

    public bool ClosesDescriptor { get; set; }

    /// <summary>For callback objects: the .NET target the runtime calls.</summary>
    public object? Target { get; set; }

    /// <summary>A weak reference (<c>delegate</c> properties): a handle, not a hold.</summary>
    public nint WeakDelegate { get; set; }

    public override string ToString() => IsClass ? Class : $"<{Class} {Origin}>";
}

/// <summary>An error the simulated framework reports.</summary>
internal sealed record FakeError(string Domain, long Code, string Description);

/// <summary>A heap block the code under test made: who holds it, and how often it ran.</summary>
internal sealed class FakeBlock(nint handle, string kind, Delegate callback)
{
    public nint Handle { get; } = handle;

    public string Kind { get; } = kind;

    public Delegate Callback { get; } = callback;

    /// <summary>The reference its maker holds from Create… until ReleaseBlock.</summary>
    public int CodeReferences { get; set; } = 1;

    /// <summary>Copies the simulated framework keeps while an answer is pending.</summary>
    public int FrameworkReferences { get; set; }

    public int Invocations { get; set; }
}
