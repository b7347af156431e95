using Lkrun.Tests.VsockBehaviour;

namespace Lkrun.Integration.Tests.Vsock;

/// <summary>
/// A device reset: the guest unbinds its vsock driver and binds it again (as a reboot or a driver reload does),
/// so QEMU stops the device's rings and starts them again.
/// </summary>
public class VsockResetTests
{
    private static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_device_reset_drops_open_connections_and_vsock_works_again()
    {
        await using var vm = await VsockTestVm.BootAsync();
        using var before = vm.ConnectGuestPort(VsockTestVm.EchoPort);
        await before.SendAsync("before"u8.ToArray(), Cancellation);
        var echoed = new byte[6];
        Assert.Equal(6, await before.ReceiveAsync(echoed, Cancellation));

        const string driver = "/sys/bus/virtio/drivers/vmw_vsock_virtio_transport";
        var (_, status) = await vm.RunInGuestAsync(
            $"d=$(basename $(readlink -f {driver}/virtio*)); echo $d > {driver}/unbind && echo $d > {driver}/bind && lkrun-guest-tool local-cid",
            TimeSpan.FromSeconds(60));
        Assert.Equal(0, status);

        VsockStreams.AssertEnds(before);

        using var after = vm.ConnectGuestPort(VsockTestVm.EchoPort);
        Assert.Equal("after the reset"u8.ToArray(), await VsockStreams.SendAndReceiveAllAsync(after, "after the reset"u8.ToArray()));
        Assert.DoesNotContain("vsock:", vm.Console);
    }
}
