using Lkrun.Engines.Tests.Vz.Fakes;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Machine;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Engines.Vz.Runtime;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Vz;

public sealed class VzPlanExecutorTests : IAsyncLifetime
{
    private readonly VzHarness _vm = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _vm.DisposeAsync();

    /// <summary>Runs the plan on a queue of the fake, as the controller does; releases the VM it returns.</summary>
    private void Execute(VzPlan plan, MacOSVersion? host = null)
    {
        var fake = _vm.Fake;
        var queue = fake.CreateSerialQueue("executor test");
        try
        {
            var foundation = new Foundation(fake);
            fake.DispatchSync(queue, () => foundation.Release(VzPlanExecutor.Execute(foundation, plan, queue, host ?? fake.Host)));
        }
        finally
        {
            fake.ReleaseQueue(queue);
        }
    }

    private EngineException Failure(VzPlan plan, MacOSVersion? host = null) => Assert.Throws<EngineException>(() => Execute(plan, host));

    private static readonly string[] Foundation =
    [
        "alloc", "retain", "release", "stringWithUTF8String:", "fileURLWithPath:", "dataWithBytes:length:",
        "length", "getBytes:length:", "localizedDescription", "domain", "code", "UTF8String",
    ];

    [Fact]
    public void A_plan_runs_in_order_on_the_queue_and_leaves_nothing_behind()
    {
        _vm.Spec = _vm.Spec with
        {
            Disks = new([new DiskSpec("/state/disk.raw", 10, DiskFormat.Raw)]),
            SharedDirectories = new([new SharedDirectorySpec("/srv", "virtiofs0", true)]),
        };
        _vm.Host = _vm.Host with { MetadataIso = "/state/data.iso" };
        var plan = _vm.Plan();

        Execute(plan);

        Assert.Equal(plan.Steps.Select(step => step.Selector), _vm.Fake.Selectors().Where(selector => !Foundation.Contains(selector)));
        Assert.All(_vm.Fake.Calls, call => Assert.True(call.OnQueue));
        // Every console and network file handle had a descriptor of its own, closed when the VM went.
        Assert.Equal(3, _vm.Fake.FileHandleDescriptors.Count);
        _vm.Fake.AssertClean();
    }

    [Fact]
    public void A_new_machine_identifier_is_written_and_read_back_on_the_next_run()
    {
        Execute(_vm.Plan());
        var path = _vm.Host.MachineIdentifier!.Path;
        var written = File.ReadAllBytes(path);
        Assert.Equal(16, written.Length);
        Assert.False(File.Exists(path + ".partial"));

        _vm.Host = _vm.Host with { MachineIdentifier = new(path, written) };
        Execute(_vm.Plan());
        var identifiers = _vm.Fake.Objects("VZGenericMachineIdentifier");
        Assert.Equal(2, identifiers.Count);
        Assert.Equal(written, (byte[])identifiers[0].Value!);
        Assert.Equal(written, (byte[])identifiers[1].Value!);
        Assert.Contains("initWithDataRepresentation:", _vm.Fake.Selectors());
        _vm.Fake.AssertClean();
    }

    [Fact]
    public void A_disk_the_framework_cannot_open_fails_in_one_line_naming_it_and_releases_everything()
    {
        _vm.Spec = _vm.Spec with { Disks = new([new DiskSpec("/data/broken.raw", null, DiskFormat.Raw)]) };
        _vm.Fake.FailingImages["/data/broken.raw"] = FakeObjCRuntime.Error("The file “broken.raw” couldn’t be opened.\nPermission denied.", 2);

        var error = Failure(_vm.Plan());

        Assert.Equal("virtualization.framework: -disk /data/broken.raw: The file “broken.raw” couldn’t be opened; Permission denied (VZErrorDomain 2)", error.Message);
        _vm.Fake.AssertClean();
    }

    [Fact]
    public void An_unsigned_binary_is_told_how_to_sign_itself()
    {
        _vm.Fake.ValidationError = FakeObjCRuntime.Error(
            "Invalid virtual machine configuration. The process doesn’t have the “com.apple.security.virtualization” entitlement.", 2);

        var error = Failure(_vm.Plan());

        Assert.StartsWith($"{Environment.ProcessPath} is not signed with the com.apple.security.virtualization entitlement", error.Message);
        Assert.Contains("codesign --force --sign - --entitlements scripts/lkrun.entitlements", error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.DoesNotContain("initWithConfiguration:queue:", _vm.Fake.Selectors());
        _vm.Fake.AssertClean();
    }

    [Fact]
    public void A_malformed_mac_address_is_refused_by_name()
    {
        _vm.Host = _vm.Host with { MacAddress = "02:zz:00:00:00:01" };

        var error = Failure(_vm.Plan());

        Assert.Equal("virtualization.framework: the MAC address 02:zz:00:00:00:01: VZMACAddress initWithString: refused it", error.Message);
        _vm.Fake.AssertClean();
    }

    [Fact]
    public void A_class_this_macOS_lacks_is_named_before_anything_is_sent_to_it()
    {
        _vm.Host = _vm.Host with { MetadataIso = "/state/data.iso" };
        var plan = _vm.Plan();
        _vm.Fake.Host = new MacOSVersion(12);

        var error = Failure(plan, new MacOSVersion(13));

        Assert.Equal($"virtualization.framework: {_vm.Host.MachineIdentifier!.Path}: this macOS has no VZGenericMachineIdentifier (it needs macOS 13)", error.Message);
        _vm.Fake.AssertClean();
    }

    [Fact]
    public void A_step_newer_than_the_host_is_refused_before_it_runs()
    {
        var error = Failure(_vm.Plan(), new MacOSVersion(12));
        Assert.Equal($"virtualization.framework: {_vm.Host.MachineIdentifier!.Path}: needs macOS 13 or newer; this Mac runs 12", error.Message);
        _vm.Fake.AssertClean();
    }

    [Fact]
    public void A_descriptor_that_cannot_be_duplicated_fails_without_leaking()
    {
        const int NeverOpen = 999_999;
        _vm.Host = _vm.Host with { NetworkDescriptor = NeverOpen };

        var error = Failure(_vm.Plan());

        Assert.Equal($"virtualization.framework: the network link: cannot duplicate descriptor {NeverOpen}: Bad file descriptor", error.Message);
        _vm.Fake.AssertClean();
    }
}
