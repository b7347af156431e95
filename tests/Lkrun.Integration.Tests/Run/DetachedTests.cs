using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Run;

/// <summary>
/// VMs that outlive their command: <c>run --detach</c>, <c>ps</c>, the control API, <c>logs</c>, <c>console</c>,
/// <c>stop</c> and <c>rm</c>, with real guests.
/// </summary>
public sealed class DetachedTests : IAsyncDisposable
{
    private readonly Scratch _scratch = new();
    private readonly LkrunCli _lkrun;

    public DetachedTests() => _lkrun = new LkrunCli(_scratch);

    public async ValueTask DisposeAsync()
    {
        await _lkrun.DisposeAsync();
        _scratch.Dispose();
    }

    private async Task<string> StartAsync(string name, params string[] args)
    {
        var state = _scratch[name + "-state"];
        var started = await _lkrun.RunDetachedAsync(state, ["--name", name, "-mem", "256", .. args], TestImages.Guest);
        Assert.True(started.ExitCode == 0, $"lkrun run --detach ended with {started.ExitCode}: {started.Error}");
        Assert.Matches($@"lkrun: {name} is running in the background: state dir {state}, guest address 192\.168\.65\.\d+\n$", started.Error);
        Assert.Equal("", started.Output);
        return state;
    }

    private async Task WaitForConsoleAsync(string state, string marker) =>
        await LkrunProcess.WaitUntilAsync(
            () => File.Exists(Path.Combine(state, "console.log")) && File.ReadAllText(Path.Combine(state, "console.log")).Contains(marker),
            LkrunProcess.BootTimeout, $"'{marker}' in console.log");

    private async Task<JsonElement> PsAsync(string name)
    {
        var ps = await _lkrun.RunAsync(["ps", "--json"]);
        Assert.Equal(0, ps.ExitCode);
        return JsonDocument.Parse(ps.Output).RootElement.EnumerateArray().Single(vm => vm.GetProperty("name").GetString() == name);
    }

    private Task<CommandResult> CurlAsync(string state, params string[] args) =>
        _lkrun.ShellAsync($"curl -sS --max-time 10 --unix-socket {Path.Combine(state, "control.sock")} {string.Join(' ', args)}");

    [Fact]
    public async Task The_whole_cycle_detach_ps_control_api_logs_console_stop_ps_rm()
    {
        var state = await StartAsync("web", "-publish", $"{LoopbackPorts.Free()}:80");
        var address = File.ReadAllText(Path.Combine(state, "ip")).Trim();

        var running = await PsAsync("web");
        Assert.Equal("running", running.GetProperty("state").GetString());
        Assert.Equal(address, running.GetProperty("address").GetString());
        Assert.Equal("qemu", running.GetProperty("engine").GetString());
        Assert.Equal(LkrunCli.RunnerPid(state), running.GetProperty("pid").GetInt32());
        var table = await _lkrun.RunAsync(["ps"]);
        Assert.Matches(@$"(?m)^web\s+running\s+qemu\s+\d+\s+{Regex(address)}\s+127\.0\.0\.1:\d+:80/tcp", table.Output);

        var vmState = await CurlAsync(state, "http://lkrun/vm/state");
        Assert.Equal(0, vmState.ExitCode);
        Assert.Equal("VirtualMachineStateRunning", JsonDocument.Parse(vmState.Output).RootElement.GetProperty("state").GetString());
        var inspect = JsonDocument.Parse((await CurlAsync(state, "http://lkrun/vm/inspect")).Output).RootElement;
        Assert.Equal(256, inspect.GetProperty("memory").GetInt32());
        Assert.Equal(address, inspect.GetProperty("address").GetString());

        await WaitForConsoleAsync(state, "lkrun-guest: ready");
        var logs = await _lkrun.RunAsync(["logs", "web"]);
        Assert.Contains("lkrun-guest: init started", logs.Output);
        var tail = await _lkrun.RunAsync(["logs", "-n", "1", "web"]);
        Assert.Single(tail.Output.TrimEnd('\n').Split('\n'));

        // Attach through a pseudo-terminal, see the screenful from before, type, and detach with Ctrl-A d.
        await using (var console = LkrunProcess.StartInTerminal(LkrunProcess.LkrunCommand(["console", "web"]), state, _lkrun.Environment))
        {
            await console.WaitForOutputAsync("attached to the console of web");
            await console.TypeAsync("\r");
            await console.WaitForOutputAsync("lkrun-guest# ");
            await console.TypeAsync("echo typed-$((40+2))\r");
            await console.WaitForOutputAsync("typed-42");
            await console.TypeAsync("\u0001d");
            Assert.Equal(0, await console.WaitForExitAsync());
            Assert.Contains("detached from web; it keeps running", console.Output);
        }
        Assert.Equal("running", (await PsAsync("web")).GetProperty("state").GetString());

        var stop = await _lkrun.RunAsync(["stop", "web"]);
        Assert.Equal(0, stop.ExitCode);
        Assert.Equal("lkrun: web: the guest powered off\n", stop.Error);

        var stopped = await PsAsync("web");
        Assert.Equal("stopped", stopped.GetProperty("state").GetString());
        Assert.Equal("the guest powered off", stopped.GetProperty("lastRun").GetString());
        Assert.Contains("lkrun-guest: shutting down", (await _lkrun.RunAsync(["logs", "web"])).Output);
        Assert.False(File.Exists(Path.Combine(state, "control.sock")));
        Assert.False(File.Exists(Path.Combine(state, "console.sock")));

        var again = await _lkrun.RunAsync(["stop", "web"]);
        Assert.Equal((0, "lkrun: web is not running\n"), (again.ExitCode, again.Error));

        var rm = await _lkrun.RunAsync(["rm", "web"]);
        Assert.Equal(0, rm.ExitCode);
        Assert.False(Directory.Exists(state));
        Assert.Equal("[]", (await _lkrun.RunAsync(["ps", "--json"])).Output.Trim());

        // Its address went back to the pool: the next VM gets it.
        var next = await StartAsync("next", "-networking", "default");
        Assert.Equal(address, File.ReadAllText(Path.Combine(next, "ip")).Trim());
        Assert.Equal(1, (await _lkrun.RunAsync(["stop", "--force", "next"])).ExitCode);
    }

    [Fact]
    public async Task A_killed_runner_shows_as_crashed_and_the_next_start_works()
    {
        var state = await StartAsync("box");
        var runner = LkrunCli.RunnerPid(state);
        var qemu = int.Parse(File.ReadAllText(Path.Combine(state, "qemu.pid")).Trim());
        Posix.Signal(runner, Posix.SIGKILL);
        await LkrunProcess.WaitUntilAsync(() => !Posix.IsAlive(qemu), TimeSpan.FromSeconds(10), "QEMU to die with its lkrun");

        // QEMU's death signal comes as the thread that started it ends; lkrun is gone, and its state dir's lock with it,
        // once its last thread has ended too.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        string? status;
        while ((status = (await PsAsync("box")).GetProperty("state").GetString()) == "running" && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
        Assert.Equal("crashed", status);
        var stop = await _lkrun.RunAsync(["stop", "box"]);
        Assert.Equal((0, "lkrun: box is not running\n"), (stop.ExitCode, stop.Error));

        var restarted = await _lkrun.RunDetachedAsync(state, ["--name", "box", "-mem", "256"], TestImages.Guest);
        Assert.Equal(0, restarted.ExitCode);
        Assert.Contains($"the lkrun that ran this VM before (pid {runner}) was killed", restarted.Error);
        Assert.Equal("running", (await PsAsync("box")).GetProperty("state").GetString());
        Assert.Equal(0, (await _lkrun.RunAsync(["stop", "box"])).ExitCode);
    }

    [Fact]
    public async Task Two_stops_at_once_both_wait_for_the_end_and_report_it()
    {
        var state = await StartAsync("pair");
        await WaitForConsoleAsync(state, "lkrun-guest: ready");
        var stops = await Task.WhenAll(_lkrun.RunAsync(["stop", "pair"]), _lkrun.RunAsync(["stop", state]));
        Assert.All(stops, stop => Assert.Equal((0, "lkrun: pair: the guest powered off\n"), (stop.ExitCode, stop.Error)));
    }

    [Fact]
    public async Task A_stop_while_the_vm_starts_waits_for_it_and_presses_until_the_guest_listens()
    {
        var state = _scratch["early-state"];
        var start = _lkrun.RunDetachedAsync(state, ["--name", "early", "-mem", "256", "-stop-timeout", "90"], TestImages.Guest);
        await LkrunProcess.WaitUntilAsync(() => File.Exists(Path.Combine(state, "lkrun.pid")), LkrunProcess.BootTimeout, "the VM's lkrun to start");
        var stop = await _lkrun.RunAsync(["stop", "early"], LkrunProcess.BootTimeout);
        Assert.Equal(0, (await start).ExitCode);
        Assert.Equal((0, "lkrun: early: the guest powered off\n"), (stop.ExitCode, stop.Error));
        Assert.Contains("lkrun-guest: power button pressed", File.ReadAllText(Path.Combine(state, "console.log")));
    }

    [Fact]
    public async Task Stop_force_is_a_hard_stop_one_line_and_exit_1()
    {
        var state = await StartAsync("plug");
        var stop = await _lkrun.RunAsync(["stop", "--force", "plug"]);
        Assert.Equal(1, stop.ExitCode);
        Assert.Equal("lkrun: plug: stopped the VM hard (HardStop on the control socket)\n", stop.Error);
        Assert.Contains("stopped the VM hard (HardStop on the control socket)", File.ReadAllText(Path.Combine(state, "lkrun.log")));
    }

    [Fact]
    public async Task Refusals_are_one_line_and_leave_the_vm_running()
    {
        var state = await StartAsync("solo");

        var sameName = await _lkrun.RunDetachedAsync(_scratch["other-state"], ["--name", "solo", "-mem", "256"], TestImages.Guest);
        Assert.Equal(2, sameName.ExitCode);
        Assert.Equal([$"lkrun: --name solo: already the name of the VM in {state}; choose another, or remove that VM with lkrun rm solo"], sameName.ErrorLines);
        Assert.False(Directory.Exists(_scratch["other-state"]));

        foreach (var command in new[] { "stop", "console", "logs", "rm" })
        {
            var unknown = await _lkrun.RunAsync([command, "nosuch"]);
            Assert.Equal(1, unknown.ExitCode);
            Assert.Equal(["lkrun: nosuch: no VM has this name, and it is not a state dir; lkrun ps lists the VMs"], unknown.ErrorLines);
        }

        var rm = await _lkrun.RunAsync(["rm", "solo"]);
        Assert.Equal((1, "lkrun: solo is running; stop it first (lkrun stop solo)\n"), (rm.ExitCode, rm.Error));

        await using (var first = LkrunProcess.StartInTerminal(LkrunProcess.LkrunCommand(["console", "solo"]), state, _lkrun.Environment))
        {
            await first.WaitForOutputAsync("attached to the console of solo");
            var second = await _lkrun.RunAsync(["console", "solo"]);
            Assert.Equal(1, second.ExitCode);
            Assert.Equal(["lkrun: solo: another terminal is attached to this console (one at a time)"], second.ErrorLines);
            await first.TypeAsync("\u0001d");
            var exitCode = await first.WaitForExitAsync();
            Assert.True(exitCode == 0, $"lkrun console exited with {exitCode}; its terminal showed:\n{first.Output}\n{first.Error}");
        }

        var vmState = await CurlAsync(state, "http://lkrun/vm/state");
        Assert.Contains("VirtualMachineStateRunning", vmState.Output);
        Assert.Equal(0, (await _lkrun.RunAsync(["stop", "solo"])).ExitCode);

        var stoppedConsole = await _lkrun.RunAsync(["console", "solo"]);
        Assert.Equal(1, stoppedConsole.ExitCode);
        Assert.Equal(["lkrun: solo is not running; lkrun logs solo shows its console log"], stoppedConsole.ErrorLines);
    }

    [Fact]
    public async Task Malformed_oversized_and_foreign_requests_are_refused_and_the_vm_runs_on()
    {
        var state = await StartAsync("api");
        var socket = Path.Combine(state, "control.sock");

        var malformed = await _lkrun.ShellAsync($"printf 'BREW /pot HTCPCP/1.0\\r\\n\\r\\n' | curl -sS --max-time 10 --unix-socket {socket} telnet://lkrun 2>&1");
        Assert.StartsWith("HTTP/1.1 400", malformed.Output);
        var badJson = await CurlAsync(state, "-w '%{http_code}'", "-d '{\"state\":'", "http://lkrun/vm/state");
        Assert.EndsWith("400", badJson.Output);
        Assert.Contains("malformed JSON", badJson.Output);
        var oversized = await _lkrun.ShellAsync(
            $"head -c 100000 /dev/zero | tr '\\0' x | curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 --unix-socket {socket} -H 'Content-Type: application/json' --data-binary @- http://lkrun/vm/state");
        Assert.Equal("413", oversized.Output);

        // Another user cannot reach the socket: mode 0600 (and the state dir's 0700) keep it out.
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(state));
        Assert.SkipUnless(Environment.UserName == "root", "running the client as another user needs root");
        const string asNobody = "setpriv --reuid 65534 --regid 65534 --clear-groups";
        var foreign = await _lkrun.ShellAsync($"{asNobody} curl -sS --max-time 10 --unix-socket {socket} http://lkrun/vm/state");
        Assert.Equal(7, foreign.ExitCode);
        Assert.Contains("Failed to connect", foreign.Error);

        // The same request as its owner goes through: the other user was kept out by the permissions alone.
        var vmState = await CurlAsync(state, "http://lkrun/vm/state");
        Assert.Contains("VirtualMachineStateRunning", vmState.Output);
        await WaitForConsoleAsync(state, "lkrun-guest: ready");
        Assert.Equal(0, (await _lkrun.RunAsync(["stop", "api"])).ExitCode);
    }

    [Fact]
    public async Task A_port_published_at_run_time_reaches_the_guest_until_it_is_removed()
    {
        var state = await StartAsync("pub");
        await WaitForConsoleAsync(state, "lkrun-guest: ready");
        var hostPort = LoopbackPorts.Free();

        var published = await CurlAsync(state, "-w '%{http_code}'", $"-d '{{\"port\": \"{hostPort}:80\"}}'", "http://lkrun/vm/publish");
        Assert.Contains($"\"port\":\"127.0.0.1:{hostPort}:80/tcp\"", published.Output);
        Assert.EndsWith("201", published.Output);
        using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) })
        {
            Assert.Equal("lkrun-guest http ok\n", await http.GetStringAsync($"http://127.0.0.1:{hostPort}/", TestContext.Current.CancellationToken));
        }
        var listed = (await PsAsync("pub")).GetProperty("publishedPorts").EnumerateArray().Select(port => port.GetString());
        Assert.Contains($"127.0.0.1:{hostPort}:80/tcp", listed);

        var twice = await CurlAsync(state, $"-d '{{\"port\": \"{hostPort}:80\"}}'", "http://lkrun/vm/publish");
        Assert.Contains($"-publish 127.0.0.1:{hostPort}:80/tcp: published twice", twice.Output);

        var removed = await CurlAsync(state, "-w '%{http_code}'", "-X DELETE", $"http://lkrun/vm/publish/{hostPort}");
        Assert.Equal("204", removed.Output);
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var refused = await Assert.ThrowsAsync<SocketException>(() => probe.ConnectAsync(new IPEndPoint(IPAddress.Loopback, hostPort), TestContext.Current.CancellationToken).AsTask());
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        Assert.Equal(0, (await _lkrun.RunAsync(["stop", "pub"])).ExitCode);
    }

    [Fact]
    public async Task Pause_freezes_the_guest_and_resume_lets_it_run_on()
    {
        var state = await StartAsync("nap");
        await WaitForConsoleAsync(state, "lkrun-guest: ready");
        Assert.Equal("202", (await CurlAsync(state, "-w '%{http_code}'", "-d '{\"state\": \"Pause\"}'", "http://lkrun/vm/state")).Output);
        Assert.Contains("VirtualMachineStatePaused", (await CurlAsync(state, "http://lkrun/vm/state")).Output);
        Assert.Equal("paused", (await PsAsync("nap")).GetProperty("state").GetString());
        Assert.Equal("202", (await CurlAsync(state, "-w '%{http_code}'", "-d '{\"state\": \"Resume\"}'", "http://lkrun/vm/state")).Output);
        Assert.Contains("VirtualMachineStateRunning", (await CurlAsync(state, "http://lkrun/vm/state")).Output);

        // A stop of a paused VM lets it run first, so the guest sees the button.
        Assert.Equal("202", (await CurlAsync(state, "-w '%{http_code}'", "-d '{\"state\": \"Pause\"}'", "http://lkrun/vm/state")).Output);
        var stop = await _lkrun.RunAsync(["stop", "nap"]);
        Assert.Equal((0, "lkrun: nap: the guest powered off\n"), (stop.ExitCode, stop.Error));
    }

    [Fact]
    public async Task Logs_follow_the_console_until_the_vm_stops()
    {
        var state = await StartAsync("tail");
        var follow = _lkrun.RunAsync(["logs", "-f", "-n", "0", "tail"], LkrunProcess.BootTimeout);
        await WaitForConsoleAsync(state, "lkrun-guest: ready");
        Assert.Equal(0, (await _lkrun.RunAsync(["stop", "tail"])).ExitCode);
        var followed = await follow;
        Assert.Equal(0, followed.ExitCode);
        Assert.Contains("lkrun-guest: shutting down", followed.Output);
    }

    private static string Regex(string text) => System.Text.RegularExpressions.Regex.Escape(text);
}
