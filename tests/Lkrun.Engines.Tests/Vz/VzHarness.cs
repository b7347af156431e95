using Lkrun.Services.State;
using System.Runtime.InteropServices;
using Lkrun.Engines.Tests.Vz.Fakes;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Machine;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Vz;

/// <summary>
/// A VM over the recording fake: real socket pairs stand in for the console and network descriptors the host
/// services hand over, and a temporary state dir holds the files the plan writes.
/// </summary>
internal sealed class VzHarness : IAsyncDisposable
{
    private readonly (int Host, int Vm) _console = Posix.StreamPair();
    private readonly (int Host, int Vm) _network = Posix.DatagramPair();

    public VzHarness(int macOS = 14)
    {
        Fake.Host = new MacOSVersion(macOS);
        Host = VzFixtures.Host(macOS) with
        {
            Console = new VzConsoleDescriptors(_console.Vm, _console.Vm),
            NetworkDescriptor = _network.Vm,
            MachineIdentifier = macOS >= 13 ? new(Path.Combine(State.FullName, StateLayout.MachineIdentifierName), null) : null,
        };
    }

    public FakeObjCRuntime Fake { get; } = new();

    public DirectoryInfo State { get; } = Directory.CreateTempSubdirectory("lkrun-vz-");

    public VzHostInputs Host { get; set; }

    public VmSpec Spec { get; set; } = VzFixtures.Spec();

    public List<string> Notices { get; } = [];

    public VzVirtualMachine? Machine { get; private set; }

    public VzPlan Plan() => VzPlanner.Plan(Spec, Host);

    public async Task<VzVirtualMachine> StartAsync()
    {
        Machine = await VzVirtualMachine.StartAsync(Fake, Plan(), Fake.Host, Notices.Add, TestContext.Current.CancellationToken);
        return Machine;
    }

    /// <summary>Disposes the VM, then checks that the run left nothing behind and broke no rule.</summary>
    public async Task StopAndAssertCleanAsync()
    {
        if (Machine is not null)
        {
            await Machine.DisposeAsync();
        }
        Fake.AssertClean();
        Assert.All(Fake.Calls, call => Assert.True(call.OnQueue, $"{call.Selector} sent off the queue"));
    }

    public async ValueTask DisposeAsync()
    {
        if (Machine is not null)
        {
            await Machine.DisposeAsync();
        }
        Fake.Dispose();
        foreach (var descriptor in new[] { _console.Host, _console.Vm, _network.Host, _network.Vm })
        {
            Posix.Close(descriptor);
        }
        State.Delete(recursive: true);
    }
}
