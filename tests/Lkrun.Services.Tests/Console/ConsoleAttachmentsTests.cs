using System.Net.Sockets;
using System.Text;
using Lkrun.Services.Console;

namespace Lkrun.Services.Tests.Console;

/// <summary><c>lkrun console</c>'s side of the relay: a device plays the VM's console, the client a terminal.</summary>
public sealed class ConsoleAttachmentsTests : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-attach-").FullName;
    private readonly List<ConsoleCommand> _commands = [];
    private readonly MemoryStream _output = new();
    private ConsoleRelay? _relay;
    private Socket? _device;

    public async ValueTask DisposeAsync()
    {
        _device?.Shutdown(SocketShutdown.Send);
        if (_relay is not null)
        {
            await _relay.DisposeAsync();
        }
        _device?.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string AttachSocket => Path.Combine(_dir, "console.sock");

    private async Task StartAsync(string? refusal = null)
    {
        var devicePath = Path.Combine(_dir, "ttyS0.sock");
        _relay = ConsoleRelay.Start(
            [ConsoleDevice.Listening(devicePath)], _output, null, command => { lock (_commands) { _commands.Add(command); } }, _ => { },
            new ConsoleAttachPoint(AttachSocket, refusal));
        _device = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await _device.ConnectAsync(new UnixDomainSocketEndPoint(devicePath));
    }

    private async Task PrintAsync(string text) => await _device!.SendAsync(Encoding.ASCII.GetBytes(text));

    private static async Task<string> ReceiveUntilAsync(Socket socket, string expected)
    {
        var received = new StringBuilder();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(Patience);
        while (!received.ToString().Contains(expected, StringComparison.Ordinal))
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            if (read == 0)
            {
                break;
            }
            received.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }
        return received.ToString();
    }

    private async Task<string> ReceiveOnDeviceAsync(int count)
    {
        var buffer = new byte[count];
        var received = 0;
        using var timeout = new CancellationTokenSource(Patience);
        while (received < count)
        {
            received += await _device!.ReceiveAsync(buffer.AsMemory(received), SocketFlags.None, timeout.Token);
        }
        return Encoding.ASCII.GetString(buffer);
    }

    [Fact]
    public async Task An_attached_terminal_sees_the_last_screenful_then_live_output_and_types_to_the_guest()
    {
        await StartAsync();
        const string printed = "line 1\nline 2\nline 3\nprompt# ";
        await PrintAsync(printed);
        // The history holds what the relay wrote to its output, so wait until the output has it all.
        var deadline = DateTime.UtcNow + Patience;
        while (_output.Length < printed.Length && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        var (console, refusal) = await ConsoleAttachClient.AttachAsync(AttachSocket, rows: 2, CancellationToken.None);
        Assert.Null(refusal);
        using (console)
        {
            Assert.Equal("line 3\nprompt# ", await ReceiveUntilAsync(console!, "prompt# "));
            await PrintAsync("live\n");
            Assert.Equal("live\n", await ReceiveUntilAsync(console!, "live\n"));
            await console!.SendAsync(Encoding.ASCII.GetBytes("uname\r"));
            Assert.Equal("uname\r", await ReceiveOnDeviceAsync(6));
        }
        Assert.True((File.GetUnixFileMode(AttachSocket) & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) == 0);
    }

    [Fact]
    public async Task A_second_terminal_is_refused_with_one_line_while_the_first_stays_attached()
    {
        await StartAsync();
        var (first, _) = await ConsoleAttachClient.AttachAsync(AttachSocket, 24, CancellationToken.None);
        using (first)
        {
            var (second, refusal) = await ConsoleAttachClient.AttachAsync(AttachSocket, 24, CancellationToken.None);
            Assert.Null(second);
            Assert.Equal("another terminal is attached to this console (one at a time)", refusal);
            await PrintAsync("still here\n");
            Assert.Contains("still here", await ReceiveUntilAsync(first!, "still here"));
        }
    }

    [Fact]
    public async Task Ctrl_a_d_detaches_and_frees_the_console_for_the_next_terminal()
    {
        await StartAsync();
        var (first, _) = await ConsoleAttachClient.AttachAsync(AttachSocket, 24, CancellationToken.None);
        using (first)
        {
            await first!.SendAsync(Encoding.ASCII.GetBytes("ls\u0001d"));
            Assert.Equal("ls", await ReceiveOnDeviceAsync(2));
            // The relay closes the detached terminal's connection.
            Assert.Equal("", await ReceiveUntilAsync(first, "never printed"));
        }
        var (next, refusal) = await ConsoleAttachClient.AttachAsync(AttachSocket, 24, CancellationToken.None);
        Assert.Null(refusal);
        next!.Dispose();
    }

    [Fact]
    public async Task The_console_keys_of_an_attached_terminal_reach_lkrun_not_the_guest()
    {
        await StartAsync();
        var (console, _) = await ConsoleAttachClient.AttachAsync(AttachSocket, 24, CancellationToken.None);
        using (console)
        {
            await console!.SendAsync(Encoding.ASCII.GetBytes("\u0001h\u0001xa"));
            Assert.Contains("Ctrl-A d detaches", await ReceiveUntilAsync(console, "Ctrl-A a sends Ctrl-A"));
            Assert.Equal("a", await ReceiveOnDeviceAsync(1));
        }
        lock (_commands)
        {
            Assert.Equal([ConsoleCommand.StopVm], _commands);
        }
    }

    [Fact]
    public async Task Attaching_is_refused_with_the_reason_while_the_console_is_on_a_terminal()
    {
        await StartAsync(refusal: "the console of web is on the terminal of its lkrun run (pid 42)");
        var (console, refusal) = await ConsoleAttachClient.AttachAsync(AttachSocket, 24, CancellationToken.None);
        Assert.Null(console);
        Assert.Equal("the console of web is on the terminal of its lkrun run (pid 42)", refusal);
    }

    [Fact]
    public async Task A_client_that_does_not_speak_the_protocol_is_refused_and_the_console_carries_on()
    {
        await StartAsync();
        using (var stranger = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            await stranger.ConnectAsync(new UnixDomainSocketEndPoint(AttachSocket), TestContext.Current.CancellationToken);
            await stranger.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\n\r\n"), SocketFlags.None, TestContext.Current.CancellationToken);
            Assert.StartsWith("refused ", await ReceiveUntilAsync(stranger, "\n"));
        }
        var (console, refusal) = await ConsoleAttachClient.AttachAsync(AttachSocket, 24, CancellationToken.None);
        Assert.Null(refusal);
        console!.Dispose();
    }

    [Fact]
    public async Task When_the_vm_stops_the_attached_terminal_gets_the_last_output_and_the_end()
    {
        await StartAsync();
        var (console, _) = await ConsoleAttachClient.AttachAsync(AttachSocket, 24, CancellationToken.None);
        using (console)
        {
            // Once this arrives the relay has taken the device's connection, as it has long before a VM stops.
            await PrintAsync("booted\n");
            Assert.Equal("booted\n", await ReceiveUntilAsync(console!, "booted\n"));
            await PrintAsync("reboot: Power down\n");
            _device!.Shutdown(SocketShutdown.Send);
            await _relay!.DisposeAsync();
            _relay = null;
            var seen = await ReceiveUntilAsync(console!, "never printed");
            Assert.Equal("reboot: Power down\n", seen);
        }
        Assert.False(File.Exists(AttachSocket));
    }
}
