using System.Net.Sockets;

namespace Lkrun.Tests.VsockBehaviour;

/// <summary>What the vsock tests do on a host connection to a guest port.</summary>
internal static class VsockStreams
{
    private static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    /// <summary>Sends everything then half-closes, while reading the reply until the guest closes.</summary>
    public static async Task<byte[]> SendAndReceiveAllAsync(Socket socket, byte[] data)
    {
        var sending = Task.Run(async () =>
        {
            await socket.SendAsync(data, Cancellation);
            socket.Shutdown(SocketShutdown.Send);
        }, Cancellation);
        var received = await ReceiveToEndAsync(socket);
        await sending;
        return received;
    }

    public static async Task<byte[]> ReceiveToEndAsync(Socket socket)
    {
        using var stream = new MemoryStream();
        var buffer = new byte[256 * 1024];
        while (await socket.ReceiveAsync(buffer, Cancellation) is var count and > 0)
        {
            stream.Write(buffer, 0, count);
        }

        return stream.ToArray();
    }

    /// <summary>Asserts that the connection ends within 10 s, closed or reset, with nothing more to read.</summary>
    public static void AssertEnds(Socket socket)
    {
        socket.ReceiveTimeout = 10_000;
        try
        {
            Assert.Equal(0, socket.Receive(new byte[1]));
        }
        catch (SocketException e)
        {
            Assert.Equal(SocketError.ConnectionReset, e.SocketErrorCode);
        }
    }
}
