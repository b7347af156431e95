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
        var serialPath = Path.Combine(_dir, "ttyS0.sock");
        var virtioPath = Path.Combine(_dir, "hvc0.sock");
        var output = new MemoryStream();
        var typed = new BlockingPipe();
        var commands = new List<ConsoleCommand>();
        var relay = ConsoleRelay.Start([ConsoleDevice.Listening(serialPath), ConsoleDevice.Listening(virtioPath)], output, typed.Reader, commands.Add, error => Assert.Fail(error.Message));

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

    [Fact]
    public async Task A_failing_output_is_reported_once_and_the_consoles_are_still_drained()
    {
        var serialPath = Path.Combine(_dir, "ttyS0.sock");
        var virtioPath = Path.Combine(_dir, "hvc0.sock");
        var lost = new List<IOException>();
        var relay = ConsoleRelay.Start([ConsoleDevice.Listening(serialPath), ConsoleDevice.Listening(virtioPath)], new ClosedPipeStream(), null, _ => { }, lost.Add);

        using var serial = await ConnectAsync(serialPath);
        using var virtio = await ConnectAsync(virtioPath);
        // Far more than the socket buffers hold: it all goes through only if the relay keeps reading.
        var line = new byte[64 * 1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        for (var i = 0; i < 64; i++)
        {
            await serial.SendAsync(line, SocketFlags.None, timeout.Token);
            await virtio.SendAsync(line, SocketFlags.None, timeout.Token);
        }

        serial.Shutdown(SocketShutdown.Send);
        virtio.Shutdown(SocketShutdown.Send);
        await relay.WriteNoticeAsync("not written either");
        await relay.DisposeAsync();
        Assert.Equal("Broken pipe", Assert.Single(lost).Message);
    }

    /// <summary>Standard output whose reader has gone: every write fails as a pipe's does.</summary>
    private sealed class ClosedPipeStream : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new IOException("Broken pipe");
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
