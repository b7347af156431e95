using System.Net.Sockets;
using System.Text;
using Lkrun.Services.Console;

namespace Lkrun.Services.Tests.Console;

public sealed class ConsoleRelayTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-console-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<Socket> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    [Fact]
    public async Task Output_of_both_devices_reaches_the_output_and_input_reaches_both()
    {
        var serialPath = Path.Combine(_dir, ConsoleRelay.SerialSocketName);
        var virtioPath = Path.Combine(_dir, ConsoleRelay.VirtioSocketName);
        var output = new MemoryStream();
        var typed = new BlockingPipe();
        var commands = new List<ConsoleCommand>();
        var relay = ConsoleRelay.Start([serialPath, virtioPath], output, typed.Reader, commands.Add);

        using var serial = await ConnectAsync(serialPath);
        using var virtio = await ConnectAsync(virtioPath);
        await serial.SendAsync(Encoding.ASCII.GetBytes("from-serial\n"));
        await virtio.SendAsync(Encoding.ASCII.GetBytes("from-hvc\n"));

        typed.Write("uname\r\u0001x");
        Assert.Equal("uname\r", await ReceiveAsync(serial, 6));
        Assert.Equal("uname\r", await ReceiveAsync(virtio, 6));

        serial.Shutdown(SocketShutdown.Send);
        virtio.Shutdown(SocketShutdown.Send);
        await relay.DisposeAsync();
        var printed = Encoding.ASCII.GetString(output.ToArray());
        Assert.Contains("from-serial\n", printed);
        Assert.Contains("from-hvc\n", printed);
        Assert.Equal([ConsoleCommand.StopVm], commands);
        Assert.False(File.Exists(serialPath));
        Assert.False(File.Exists(virtioPath));
    }

    private static async Task<string> ReceiveAsync(Socket socket, int count)
    {
        var buffer = new byte[count];
        var received = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (received < count)
        {
            received += await socket.ReceiveAsync(buffer.AsMemory(received), SocketFlags.None, timeout.Token);
        }
        return Encoding.ASCII.GetString(buffer);
    }

    /// <summary>An input stream whose reads block until the test writes, as a terminal's do.</summary>
    private sealed class BlockingPipe
    {
        private readonly System.IO.Pipes.AnonymousPipeServerStream _server = new(System.IO.Pipes.PipeDirection.Out);

        public BlockingPipe() => Reader = new System.IO.Pipes.AnonymousPipeClientStream(System.IO.Pipes.PipeDirection.In, _server.ClientSafePipeHandle);

        public Stream Reader { get; }

        public void Write(string text)
        {
            _server.Write(Encoding.Latin1.GetBytes(text));
            _server.Flush();
        }
    }
}
