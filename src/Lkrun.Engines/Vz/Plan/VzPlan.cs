using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Spec;

namespace Lkrun.Engines.Vz.Plan;

/// <summary>
/// An argument of a message in the plan, before it becomes an Objective-C value. The executor turns each into the
/// C type its selector's shape asks for (<see cref="VzCatalogue"/>); a kind that does not fit is a bug the tests
/// catch.
/// </summary>
public abstract record VzArgument;

/// <summary>The object an earlier <see cref="VzCreate"/> or <see cref="VzArray"/> step made.</summary>
public sealed record VzObjectRef(string Name) : VzArgument
{
    public override string ToString() => Name;
}

/// <summary>A class object, as the receiver of a class method.</summary>
public sealed record VzClassRef(string Class) : VzArgument
{
    public override string ToString() => Class;
}

/// <summary>An <c>NSString</c>.</summary>
public sealed record VzString(string Value) : VzArgument
{
    public override string ToString() => $"@\"{Value}\"";
}

/// <summary>A file <c>NSURL</c> for an absolute path.</summary>
public sealed record VzFileUrl(string Path) : VzArgument
{
    public override string ToString() => $"file://{Path}";
}

/// <summary>An <c>NSData</c> holding these bytes.</summary>
public sealed record VzData(ValueList<byte> Bytes) : VzArgument
{
    public override string ToString() => $"<NSData {Bytes.Count} bytes>";
}

/// <summary>
/// A descriptor of the host's, handed to an <c>NSFileHandle</c> that closes it: the executor passes a duplicate
/// made when the step runs, so the host keeps its own and the framework owns one it may close.
/// </summary>
public sealed record VzDuplicatedDescriptor(int Descriptor) : VzArgument
{
    public override string ToString() => $"dup(fd {Descriptor})";
}

public sealed record VzBool(bool Value) : VzArgument
{
    public override string ToString() => Value ? "YES" : "NO";
}

/// <summary>An <c>NSInteger</c> (an enumeration value or a size).</summary>
public sealed record VzInteger(long Value, string? Meaning = null) : VzArgument
{
    public override string ToString() => Meaning is null ? $"{Value}" : $"{Value} ({Meaning})";
}

/// <summary>An <c>NSUInteger</c>.</summary>
public sealed record VzUnsigned(ulong Value) : VzArgument
{
    public override string ToString() => $"{Value}";
}

/// <summary>A <c>uint64_t</c>.</summary>
public sealed record VzUInt64(ulong Value) : VzArgument
{
    public override string ToString() => $"{Value}";
}

public sealed record VzNil : VzArgument
{
    public static readonly VzNil Value = new();

    public override string ToString() => "nil";
}

/// <summary>The serial dispatch queue the virtual machine runs on.</summary>
public sealed record VzQueue : VzArgument
{
    public static readonly VzQueue Value = new();

    public override string ToString() => "<vm queue>";
}

/// <summary>
/// One step of the plan. <see cref="Minimum"/> is the first macOS that has everything the step uses;
/// <see cref="Source"/> names the header or reference implementation it follows; <see cref="Subject"/> is what the
/// user gave that the step serves (a flag and its value, or a file), for the one line that reports its failure.
/// </summary>
public abstract record VzStep
{
    public required MacOSVersion Minimum { get; init; }

    public required string Source { get; init; }

    public required string Subject { get; init; }

    /// <summary>The selector this step sends (an initializer for <see cref="VzCreate"/>); null for host steps.</summary>
    public abstract string? Selector { get; }
}

/// <summary><c>[[Class alloc] initializer…]</c>, an object lkrun owns (+1) under <see cref="Name"/>.</summary>
public sealed record VzCreate(string Name, string Class, string Initializer, ValueList<VzArgument> Arguments) : VzStep
{
    public override string? Selector => Initializer;
}

/// <summary>A message whose result is not used: a setter, mostly.</summary>
public sealed record VzSend(VzArgument Receiver, string Message, ValueList<VzArgument> Arguments) : VzStep
{
    public override string? Selector => Message;
}

/// <summary>
/// A check that returns <c>BOOL</c> with an <c>NSError</c> (<c>validateWithError:</c>, <c>validateTag:error:</c>):
/// the framework raises an Objective-C exception for input it would refuse here, so the plan asks first.
/// </summary>
public sealed record VzCheck(VzArgument Receiver, string Message, ValueList<VzArgument> Arguments) : VzStep
{
    public override string? Selector => Message;
}

/// <summary>An <c>NSArray</c> of objects made earlier, under <see cref="Name"/>.</summary>
public sealed record VzArray(string Name, ValueList<string> Items) : VzStep
{
    public override string? Selector => "arrayWithObjects:count:";
}

/// <summary>
/// A host step: writes the bytes of the <c>NSData</c> that <see cref="Message"/> returns to <see cref="Path"/>
/// (the machine identifier a VM keeps in its state dir).
/// </summary>
public sealed record VzSaveData(VzObjectRef Receiver, string Message, string Path) : VzStep
{
    public override string? Selector => Message;
}

/// <summary>
/// Everything the executor does to build the virtual machine, in order, and what the host services must know
/// about it. Pure data: it creates nothing.
/// </summary>
public sealed record VzPlan(ValueList<VzStep> Steps)
{
    /// <summary>The name of the <c>VZVirtualMachine</c> the last step makes.</summary>
    public const string VirtualMachine = "vm";

    /// <summary>The newest macOS any step needs.</summary>
    public MacOSVersion Minimum => Steps.Select(step => step.Minimum).Aggregate(MacOSVersion.BigSur, MacOSVersion.Max);

    /// <summary>
    /// The MTU of the guest's interface on lkrun's own network, for the network service's DHCP answer; null when
    /// the VM is not on it (Apple's NAT, or no network).
    /// </summary>
    public int? NetworkMtu { get; init; }
}
