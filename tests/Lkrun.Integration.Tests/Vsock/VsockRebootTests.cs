using System.Net.Sockets;

namespace Lkrun.Integration.Tests.Vsock;

/// <summary>A guest reboot resets the virtio device: QEMU stops the rings and starts them again for the new driver.</summary>
public class VsockRebootTests
{
    private static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    private static async Task<byte[]> EchoAsync(Socket socket, byte[] data)
    {
        await socket.SendAsync(data, Cancellation);
        socket.Shutdown(SocketShutdown.Send);
        using var stream = new MemoryStream();
        var buffer = new byte[4096];
        while (await socket.ReceiveAsync(buffer, Cancellation) is var count and > 0)
        {
            stream.Write(buffer, 0, count);
        }

        return stream.ToArray();
    }

    [Fact]
    public async Task Guest_reboot_drops_open_connections_and_vsock_works_again()
    {
        await using var vm = await VsockTestVm.BootAsync(Cancellation, allowReboot: true);
        using var before = vm.ConnectGuestPort(VsockTestVm.EchoPort);
        await before.SendAsync("before"u8.ToArray(), Cancellation);
        var echoed = new byte[6];
        Assert.Equal(6, await before.ReceiveAsync(echoed, Cancellation));

        await vm.RebootAsync(Cancellation);

        before.ReceiveTimeout = 10_000;
        try
        {
            Assert.Equal(0, before.Receive(new byte[1]));
        }
        catch (SocketException e)
        {
            Assert.Equal(SocketError.ConnectionReset, e.SocketErrorCode);
        }

        using var after = vm.ConnectGuestPort(VsockTestVm.EchoPort);
        Assert.Equal("after the reboot"u8.ToArray(), await EchoAsync(after, "after the reboot"u8.ToArray()));
        Assert.Empty(vm.DeviceLog);
    }
}
