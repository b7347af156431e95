using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Lkrun.Control;
using Lkrun.Spec;

namespace Lkrun.Tests.Control;

/// <summary>The control API over a real unix socket, in front of a VM that only records what it is asked.</summary>
public sealed class ControlServerTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-control-").FullName;
    private readonly FakeVm _vm = new();
    private ControlServer? _server;

    private string SocketPath => Path.Combine(_dir, "control.sock");

    public async ValueTask InitializeAsync() => _server = await ControlServer.StartAsync(SocketPath, _vm, CancellationToken.None);

    public async ValueTask DisposeAsync()
    {
        await _server!.DisposeAsync();
        Assert.False(File.Exists(SocketPath));
        Directory.Delete(_dir, recursive: true);
    }

    private sealed class FakeVm : IVmControl
    {
        public List<string> Calls { get; } = [];

        public VmPowerState PowerState { get; set; } = VmPowerState.Running;

        public bool CanPause { get; set; }

        public IReadOnlyList<PublishedPort> PublishedPorts { get; set; } = [new(IPAddress.Loopback, 2222, 22, PortProtocol.Tcp)];

        public VmInspection Inspect() => new(
            2, 512, new VmDevices([new BlockDevice("/s/disk.raw", false)], [new NetworkDevice(true, "02:00:00:00:00:01")], [new VsockDevice(2374, "/s/guest.00000946", true)],
                [new SharedDirectoryDevice("/home/user/src", "virtiofs0", true)]),
            "web", "qemu", 4242, "/s", "192.168.65.3", [.. PublishedPorts.Select(port => port.ToString())], [new VsockDevice(2374, "/s/guest.00000946", true)],
            DateTimeOffset.UnixEpoch, ControlServer.VfkitState(PowerState));

        public void Stop(TimeSpan? timeout) => Calls.Add($"stop {timeout?.TotalSeconds}");

        public void StopHard() => Calls.Add("hard stop");

        public Task PauseAsync(CancellationToken cancellation)
        {
            Calls.Add("pause");
            PowerState = VmPowerState.Paused;
            return Task.CompletedTask;
        }

        public Task ResumeAsync(CancellationToken cancellation)
        {
            Calls.Add("resume");
            PowerState = VmPowerState.Running;
            return Task.CompletedTask;
        }

        public Task<PublishedPort> PublishAsync(string flagValue, CancellationToken cancellation)
        {
            var port = FlagSyntax.ParsePublish(flagValue);
            PublishedPorts = [.. PublishedPorts, port];
            return Task.FromResult(port);
        }

        public Task UnpublishAsync(PublishedPort port, CancellationToken cancellation)
        {
            Calls.Add($"unpublish {port}");
            PublishedPorts = [.. PublishedPorts.Where(p => p != port)];
            return Task.CompletedTask;
        }
    }

    /// <summary>Sends raw bytes, as a client that need not speak HTTP well, and reads until the server closes or answers.</summary>
    private async Task<string> SendRawAsync(byte[] request)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath));
        try
        {
            await socket.SendAsync(request);
        }
        catch (SocketException)
        {
            // The server may close before it has read all of an oversized request; its answer is still there.
        }
        var response = new StringBuilder();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
            {
                response.Append(Encoding.ASCII.GetString(buffer, 0, read));
                if (response.ToString().Contains("\r\n\r\n", StringComparison.Ordinal) && !response.ToString().Contains("Content-Length", StringComparison.OrdinalIgnoreCase))
                {
                    break;
                }
            }
        }
        catch (SocketException)
        {
            // A reset after the answer.
        }
        return response.ToString();
    }

    private async Task<(int Status, string Body)> RequestAsync(string method, string path, string? body = null)
    {
        var request = new StringBuilder($"{method} {path} HTTP/1.1\r\nHost: lkrun\r\nConnection: close\r\n");
        if (body is not null)
        {
            request.Append($"Content-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\n");
        }
        request.Append("\r\n").Append(body);
        var response = await SendRawAsync(Encoding.UTF8.GetBytes(request.ToString()));
        var status = int.Parse(response.Split(' ', 3)[1]);
        var separator = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        return (status, separator < 0 ? "" : response[(separator + 4)..]);
    }

    private static string Error(string body) => JsonDocument.Parse(body).RootElement.GetProperty("error").GetString()!;

    [Fact]
    public void The_socket_is_for_its_owner_only()
    {
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(SocketPath));
    }

    [Fact]
    public async Task The_state_reads_as_vfkits()
    {
        var (status, body) = await RequestAsync("GET", "/vm/state");
        Assert.Equal(200, status);
        var state = JsonDocument.Parse(body).RootElement;
        Assert.Equal("VirtualMachineStateRunning", state.GetProperty("state").GetString());
        Assert.False(state.GetProperty("canStart").GetBoolean());
        Assert.False(state.GetProperty("canPause").GetBoolean());
        Assert.True(state.GetProperty("canStop").GetBoolean());
        Assert.True(state.GetProperty("canHardStop").GetBoolean());
    }

    [Fact]
    public async Task Stop_and_hard_stop_are_accepted_and_handed_to_the_vm()
    {
        Assert.Equal(202, (await RequestAsync("POST", "/vm/state", """{"state": "Stop"}""")).Status);
        Assert.Equal(202, (await RequestAsync("POST", "/vm/state", """{"state": "Stop", "timeout": 7.5}""")).Status);
        Assert.Equal(202, (await RequestAsync("POST", "/vm/state", """{"state": "HardStop"}""")).Status);
        Assert.Equal(["stop ", "stop 7.5", "hard stop"], _vm.Calls);
    }

    [Fact]
    public async Task Pause_and_resume_answer_501_where_the_engine_cannot_and_work_where_it_can()
    {
        var (status, body) = await RequestAsync("POST", "/vm/state", """{"state": "Pause"}""");
        Assert.Equal(501, status);
        Assert.Equal("this engine cannot pause a VM", Error(body));

        _vm.CanPause = true;
        Assert.Equal(202, (await RequestAsync("POST", "/vm/state", """{"state": "Pause"}""")).Status);
        Assert.Equal("VirtualMachineStatePaused", JsonDocument.Parse((await RequestAsync("GET", "/vm/state")).Body).RootElement.GetProperty("state").GetString());
        Assert.Equal(202, (await RequestAsync("POST", "/vm/state", """{"state": "Resume"}""")).Status);
        Assert.Equal(["pause", "resume"], _vm.Calls);
    }

    [Theory]
    [InlineData("""{"state": "Explode"}""", "unknown state 'Explode' (Stop, HardStop, Pause or Resume)")]
    [InlineData("""{"state": "Stop", "timeout": -1}""", "timeout -1: not a positive number of seconds")]
    [InlineData("""{"state": """, "malformed JSON")]
    [InlineData("[1, 2]", "malformed JSON")]
    [InlineData("null", "expected a JSON object")]
    public async Task Bad_state_changes_are_400_with_one_line_and_reach_nothing(string body, string message)
    {
        var (status, reply) = await RequestAsync("POST", "/vm/state", body);
        Assert.Equal(400, status);
        Assert.StartsWith(message, Error(reply));
        Assert.Empty(_vm.Calls);
    }

    [Fact]
    public async Task A_stopped_vm_refuses_changes_with_409()
    {
        _vm.PowerState = VmPowerState.Stopped;
        var (status, body) = await RequestAsync("POST", "/vm/state", """{"state": "Stop"}""");
        Assert.Equal(409, status);
        Assert.Equal("the VM is stopped", Error(body));
    }

    [Fact]
    public async Task Inspect_has_vfkits_fields_and_lkruns()
    {
        var (status, body) = await RequestAsync("GET", "/vm/inspect");
        Assert.Equal(200, status);
        var vm = JsonDocument.Parse(body).RootElement;
        Assert.Equal(2, vm.GetProperty("cpus").GetInt32());
        Assert.Equal(512, vm.GetProperty("memory").GetInt32());
        Assert.Equal("/s/guest.00000946", vm.GetProperty("devices").GetProperty("vsock")[0].GetProperty("socketURL").GetString());
        var share = vm.GetProperty("devices").GetProperty("virtiofs")[0];
        Assert.Equal(("/home/user/src", "virtiofs0", true),
            (share.GetProperty("sharedDir").GetString(), share.GetProperty("mountTag").GetString(), share.GetProperty("readOnly").GetBoolean()));
        Assert.Equal("192.168.65.3", vm.GetProperty("address").GetString());
        Assert.Equal("127.0.0.1:2222:22/tcp", vm.GetProperty("publishedPorts")[0].GetString());
        Assert.Equal("web", vm.GetProperty("name").GetString());
    }

    [Fact]
    public async Task Ports_are_published_and_removed_by_host_port()
    {
        var (status, body) = await RequestAsync("POST", "/vm/publish", """{"port": "8080:80"}""");
        Assert.Equal(201, status);
        Assert.Equal("127.0.0.1:8080:80/tcp", JsonDocument.Parse(body).RootElement.GetProperty("port").GetString());
        Assert.Contains("127.0.0.1:8080:80/tcp", (await RequestAsync("GET", "/vm/publish")).Body);

        Assert.Equal(204, (await RequestAsync("DELETE", "/vm/publish/127.0.0.1:8080/tcp")).Status);
        Assert.Equal(204, (await RequestAsync("DELETE", "/vm/publish/2222")).Status);
        Assert.Equal(["unpublish 127.0.0.1:8080:80/tcp", "unpublish 127.0.0.1:2222:22/tcp"], _vm.Calls);

        var (missing, reply) = await RequestAsync("DELETE", "/vm/publish/9999/udp");
        Assert.Equal(404, missing);
        Assert.Equal("host port 9999/udp is not published", Error(reply));
    }

    [Fact]
    public async Task A_bad_port_is_400_with_publishs_message()
    {
        var (status, body) = await RequestAsync("POST", "/vm/publish", """{"port": "80"}""");
        Assert.Equal(400, status);
        Assert.Equal("-publish 80: expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]", Error(body));
    }

    [Theory]
    [InlineData("GET", "/vm/nothing", 404)]
    [InlineData("DELETE", "/vm/state", 405)]
    [InlineData("PUT", "/vm/inspect", 405)]
    public async Task Unknown_resources_and_methods_are_refused(string method, string path, int expected)
    {
        Assert.Equal(expected, (await RequestAsync(method, path)).Status);
    }

    [Fact]
    public async Task A_malformed_request_is_400_and_the_server_carries_on()
    {
        var response = await SendRawAsync("NOT HTTP AT ALL\r\n\r\n"u8.ToArray());
        Assert.StartsWith("HTTP/1.1 400", response);
        Assert.Equal(200, (await RequestAsync("GET", "/vm/state")).Status);
    }

    [Fact]
    public async Task An_oversized_body_is_413_and_never_reaches_the_vm()
    {
        var body = $$"""{"state": "Stop", "padding": "{{new string('x', ControlServer.MaxRequestBodyBytes)}}"}""";
        var (status, _) = await RequestAsync("POST", "/vm/state", body);
        Assert.Equal(413, status);
        Assert.Empty(_vm.Calls);
        Assert.Equal(200, (await RequestAsync("GET", "/vm/state")).Status);
    }

    [Fact]
    public async Task Oversized_headers_are_431()
    {
        var request = $"GET /vm/state HTTP/1.1\r\nHost: lkrun\r\nX-Padding: {new string('x', 32 * 1024)}\r\n\r\n";
        Assert.StartsWith("HTTP/1.1 431", await SendRawAsync(Encoding.ASCII.GetBytes(request)));
    }
}
