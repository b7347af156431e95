using System.Net.Sockets;
using Lkrun.Tests.VsockBehaviour;

namespace Lkrun.Integration.Tests.Vsock;

/// <summary>One booted test guest shared by the vsock tests (they run one after another).</summary>
public sealed class VsockVmFixture : IVsockWorld, IAsyncLifetime
{
    private static readonly TimeSpan GuestCommandTimeout = TimeSpan.FromSeconds(120);

    private VsockTestVm? _vm;

    internal VsockTestVm Vm => _vm ?? throw new InvalidOperationException("the guest did not boot");

    public int IdleDescriptors { get; private set; }

    public int Descriptors => Vm.LkrunDescriptors;

    public long? ResidentBytes => Vm.LkrunResidentBytes;

    public string Reports => Vm.Console;

    public async ValueTask InitializeAsync()
    {
        _vm = await VsockTestVm.BootAsync();
        IdleDescriptors = _vm.LkrunDescriptors;
    }

    public async ValueTask DisposeAsync()
    {
        if (_vm is not null)
        {
            await _vm.DisposeAsync();
        }
    }

    public Socket ConnectGuestPort(uint port) => Vm.ConnectGuestPort(port);

    public Task<Socket> ListenHostPortAsync(uint port) => Task.FromResult(Vm.ListenHostPort(port));

    public Task<GuestRun> GuestSendsAsync(uint hostPort, int bytes) => RunGuestToolAsync($"vsock-send 2 {hostPort} {bytes}");

    public Task<GuestRun> GuestReceivesAsync(uint hostPort, int bytes) => RunGuestToolAsync($"vsock-recv 2 {hostPort} {bytes}");

    private async Task<GuestRun> RunGuestToolAsync(string arguments)
    {
        var (output, status) = await Vm.RunInGuestAsync($"lkrun-guest-tool {arguments}", GuestCommandTimeout);
        if (status != 0 && !output.Contains("Connection reset by peer", StringComparison.Ordinal))
        {
            Assert.Fail($"lkrun-guest-tool {arguments} failed ({status}): {output}");
        }

        return new GuestRun(Refused: status != 0, output);
    }
}

/// <summary>The vsock behaviour suite over lkrun's vhost-user device, against QEMU and a Linux guest.</summary>
public class VsockGuestTests(VsockVmFixture fixture) : VsockBehaviourTests<VsockVmFixture>(fixture), IClassFixture<VsockVmFixture>;
