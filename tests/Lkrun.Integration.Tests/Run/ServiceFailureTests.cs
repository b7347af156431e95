using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Run;

/// <summary>
/// A host service that dies while its VM runs stops the VM: one line naming the service, exit 1, no QEMU left.
/// The failures are provoked with the LKRUN_FAULT hook, which makes the service's own worker fail.
/// </summary>
public sealed class ServiceFailureTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData("vsock", "the vsock device stopped: fault injected by LKRUN_FAULT into vsock; stopped the VM")]
    [InlineData("network", "the NAT network stopped: fault injected by LKRUN_FAULT into network; stopped the VM")]
    public async Task A_service_that_fails_stops_the_vm_with_one_line_naming_it(string service, string line)
    {
        var environment = new Dictionary<string, string> { ["LKRUN_FAULT"] = $"{service}=6" };
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256"], TestImages.Guest, environment: environment);
        var qemu = await lkrun.QemuPidAsync();
        Assert.Equal(1, await lkrun.WaitForExitAsync());
        Assert.EndsWith($"lkrun: {line}", lkrun.Error.TrimEnd('\n'));
        Assert.False(Posix.IsAlive(qemu));
        Assert.DoesNotContain(Directory.GetFiles(_scratch["state"]), file => file.EndsWith(".sock", StringComparison.Ordinal));
    }
}
