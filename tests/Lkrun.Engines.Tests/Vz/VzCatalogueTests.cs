using System.Net;
using System.Reflection;
using System.Runtime.InteropServices;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Engines.Vz.Runtime;
using Lkrun.Engines.Vz.Runtime.MacOS;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Vz;

public class VzCatalogueTests
{
    /// <summary>Plans that between them use every kind of step and device the planner makes.</summary>
    private static IEnumerable<VzPlan> Plans()
    {
        var shares = new ValueList<SharedDirectorySpec>([new SharedDirectorySpec("/srv", "virtiofs0", true)]);
        var disks = new ValueList<DiskSpec>([new DiskSpec("/d.raw", null, DiskFormat.Raw)]);
        foreach (var macOS in new[] { 12, 13 })
        {
            var host = VzFixtures.Host(macOS) with
            {
                MetadataIso = "/state/data.iso",
                EfiVariableStore = new("/state/efi-variable-store", false),
                MachineIdentifier = macOS >= 13 ? new("/state/machine-identifier", new byte[16]) : null,
            };
            yield return VzPlanner.Plan(VzFixtures.Spec() with { Disks = disks, SharedDirectories = shares }, host);
            yield return VzPlanner.Plan(VzFixtures.Spec(new KernelSquashfsBoot("/k", "/s", "")) with { Network = new NetworkSpec { Mode = NetworkMode.VzNat } }, host);
        }
        yield return VzPlanner.Plan(VzFixtures.Spec(new IsoBoot("/x.iso", true, null)), VzFixtures.Host() with { EfiVariableStore = new("/s", true) });
        yield return VzPlanner.Plan(VzFixtures.Spec(new IsoBoot("/x.iso", true, null)), VzFixtures.Host() with { EfiVariableStore = new("/s", false) });
    }

    [Fact]
    public void Every_selector_and_class_a_plan_uses_is_in_the_catalogue()
    {
        foreach (var step in Plans().SelectMany(plan => plan.Steps))
        {
            Assert.True(VzCatalogue.Selectors.ContainsKey(step.Selector!), step.Selector);
            if (step is VzCreate create)
            {
                Assert.True(VzCatalogue.Classes.ContainsKey(create.Class), create.Class);
            }
            if (step is VzCheck { Receiver: VzClassRef cls })
            {
                Assert.True(VzCatalogue.Classes.ContainsKey(cls.Class), cls.Class);
            }
        }
    }

    [Fact]
    public void Every_selector_has_one_colon_per_argument()
    {
        foreach (var info in VzCatalogue.Selectors.Values)
        {
            Assert.Equal(info.Name.Count(c => c == ':'), MessageShapes.Of(info.Shape).Arity);
            Assert.Equal(info.Name.EndsWith("error:", StringComparison.OrdinalIgnoreCase), MessageShapes.Of(info.Shape).Arguments.LastOrDefault() == ArgumentKind.ErrorOut);
        }
    }

    [Fact]
    public void Every_shape_is_used_and_every_entry_cites_its_source()
    {
        Assert.Equal(MessageShapes.All.ToHashSet(), VzCatalogue.Selectors.Values.Select(info => info.Shape).ToHashSet());
        Assert.All(VzCatalogue.Selectors.Values, info => Assert.Contains(".h", info.Source));
        Assert.All(VzCatalogue.Classes.Values, info => Assert.Contains(".h", info.Source));
        Assert.All(VzCatalogue.Classes.Values.Where(info => info.Name.StartsWith("VZ", StringComparison.Ordinal)), info => Assert.True(info.Minimum >= MacOSVersion.BigSur));
    }

    private static readonly Dictionary<ArgumentKind, Type[]> InterfaceTypes = new()
    {
        [ArgumentKind.Object] = [typeof(ObjCId)],
        [ArgumentKind.Block] = [typeof(ObjCBlock)],
        [ArgumentKind.Queue] = [typeof(DispatchQueue)],
        [ArgumentKind.Bool] = [typeof(bool)],
        [ArgumentKind.Integer] = [typeof(nint)],
        [ArgumentKind.Unsigned] = [typeof(nuint)],
        [ArgumentKind.UInt64] = [typeof(ulong)],
        [ArgumentKind.Int32] = [typeof(int)],
        [ArgumentKind.UInt32] = [typeof(uint)],
        [ArgumentKind.CString] = [typeof(string)],
        [ArgumentKind.ObjectArray] = [typeof(ReadOnlySpan<ObjCId>)],
        [ArgumentKind.Bytes] = [typeof(ReadOnlySpan<byte>)],
        [ArgumentKind.BytesOut] = [typeof(Span<byte>)],
        [ArgumentKind.Pointer] = [typeof(nint)],
        [ArgumentKind.ErrorOut] = [typeof(ObjCId).MakeByRefType()],
    };

    /// <summary>What each kind is in C, as the real runtime's objc_msgSend imports declare it.</summary>
    private static readonly Dictionary<ArgumentKind, Type[]> NativeTypes = new()
    {
        [ArgumentKind.Object] = [typeof(nint)],
        [ArgumentKind.Block] = [typeof(nint)],
        [ArgumentKind.Queue] = [typeof(nint)],
        [ArgumentKind.Bool] = [typeof(byte)],
        [ArgumentKind.Integer] = [typeof(nint)],
        [ArgumentKind.Unsigned] = [typeof(nuint)],
        [ArgumentKind.UInt64] = [typeof(ulong)],
        [ArgumentKind.Int32] = [typeof(int)],
        [ArgumentKind.UInt32] = [typeof(uint)],
        [ArgumentKind.CString] = [typeof(string)],
        [ArgumentKind.ObjectArray] = [typeof(nint*), typeof(nuint)],
        [ArgumentKind.Bytes] = [typeof(byte*), typeof(nuint)],
        [ArgumentKind.BytesOut] = [typeof(byte*), typeof(nuint)],
        [ArgumentKind.Pointer] = [typeof(nint)],
        [ArgumentKind.ErrorOut] = [typeof(nint*)],
    };

    private static readonly Dictionary<ReturnKind, (Type Interface, Type Native)> ReturnTypes = new()
    {
        [ReturnKind.Void] = (typeof(void), typeof(void)),
        [ReturnKind.Object] = (typeof(ObjCId), typeof(nint)),
        [ReturnKind.Bool] = (typeof(bool), typeof(byte)),
        [ReturnKind.Integer] = (typeof(nint), typeof(nint)),
        [ReturnKind.Unsigned] = (typeof(nuint), typeof(nuint)),
        [ReturnKind.Int32] = (typeof(int), typeof(int)),
        [ReturnKind.CString] = (typeof(string), typeof(byte*)),
    };

    /// <summary>Each shape has exactly one typed send in the runtime interface: receiver, selector, then its arguments.</summary>
    [Fact]
    public void Every_shape_has_its_send_in_the_runtime_interface()
    {
        var sends = typeof(IObjCRuntime).GetMethods().Where(method => method.Name.StartsWith("Send", StringComparison.Ordinal)).ToList();
        Assert.Equal(MessageShapes.All.Count(), sends.Count);
        foreach (var shape in MessageShapes.All)
        {
            var signature = MessageShapes.Of(shape);
            var method = Assert.Single(sends, m => m.Name == "Send" + shape);
            Assert.Equal(ReturnTypes[signature.Return].Interface, method.ReturnType);
            Assert.Equal(
                [typeof(ObjCId), typeof(Selector), .. signature.Arguments.SelectMany(kind => InterfaceTypes[kind])],
                method.GetParameters().Select(parameter => parameter.ParameterType));
        }
    }

    /// <summary>
    /// Each shape has one objc_msgSend import of its own in the real runtime, with the C types of its arguments
    /// (BOOL as one byte, never variadic), so a message is always sent through its method's exact prototype.
    /// </summary>
    [Fact]
    public void Every_shape_has_its_own_objc_msgSend_import_with_the_c_types()
    {
        var imports = typeof(LibObjC).GetMethods(BindingFlags.Public | BindingFlags.Static)
            .Where(method => method.GetCustomAttribute<LibraryImportAttribute>()?.EntryPoint == "objc_msgSend")
            .ToList();
        Assert.Equal(MessageShapes.All.Count(), imports.Count);
        foreach (var shape in MessageShapes.All)
        {
            var signature = MessageShapes.Of(shape);
            var import = Assert.Single(imports, m => m.Name == shape.ToString());
            Assert.Equal(ReturnTypes[signature.Return].Native, import.ReturnType);
            Assert.Equal(
                [typeof(nint), typeof(nint), .. signature.Arguments.SelectMany(kind => NativeTypes[kind])],
                import.GetParameters().Select(parameter => parameter.ParameterType));
        }
    }
}
