using System.Net.Sockets;
using Lkrun.Integration.Tests.Infrastructure;
using Lkrun.Tests.VsockBehaviour;

namespace Lkrun.Integration.Tests.Vsock;

/// <summary>
/// The test guest booted by <c>lkrun run -vsock-ports</c> on an interactive console, through which tests run
/// commands in the guest's shell. lkrun's own descriptors and memory are watched from /proc, since the device runs
/// inside lkrun.
/// </summary>
internal sealed class VsockTestVm : IAsyncDisposable
{
    public const uint EchoPort = GuestPorts.Echo;
    public const uint DiscardPort = GuestPorts.Discard;
    public const uint SourcePort = GuestPorts.Source;
    public const uint SilentPort = GuestPorts.Silent;

    private readonly Scratch _scratch;
    private readonly LkrunProcess _lkrun;

    private VsockTestVm(Scratch scratch, LkrunProcess lkrun, int lkrunPid)
    {
        _scratch = scratch;
        _lkrun = lkrun;
        LkrunPid = lkrunPid;
    }

    public string StateDirectory => _lkrun.StateDirectory;

    public int LkrunPid { get; }

    /// <summary>What lkrun printed on its console (stdout and stderr share the terminal).</summary>
    public string Console => _lkrun.Output;

    public static Task<VsockTestVm> BootAsync() => BootAsync(["-mem", "512", "-networking", "none"], descriptorLimit: null);

    /// <summary>
    /// Boots with <paramref name="flags"/> in place of the default memory and network flags, beside the test
    /// ports; a <paramref name="descriptorLimit"/> starts lkrun under <c>prlimit --nofile=N:N</c>.
    /// </summary>
    public static async Task<VsockTestVm> BootAsync(IReadOnlyList<string> flags, int? descriptorLimit)
    {
        var scratch = new Scratch();
        string[] args = ["run", "-state", scratch["state"], .. flags, "-vsock-ports", $"{EchoPort},{DiscardPort},{SourcePort}", "-vsock-ports", $"{SilentPort}", TestImages.Guest];
        var lkrun = descriptorLimit is { } limit
            ? LkrunProcess.StartInTerminal($"exec prlimit --nofile={limit}:{limit} {LkrunProcess.LkrunCommand(args)}", scratch["state"])
            : LkrunProcess.Start(args, scratch["state"], terminal: true);
        try
        {
            // The sockets exist, private to the user, before the guest has booted.
            await LkrunProcess.WaitUntilAsync(() => File.Exists(Path.Combine(scratch["state"], $"guest.{EchoPort:x8}")), LkrunProcess.BootTimeout, "guest.00001388");
            Assert.DoesNotContain("lkrun-guest: init started", lkrun.Output);
            foreach (var port in new[] { EchoPort, DiscardPort, SourcePort, SilentPort })
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(scratch["state"], $"guest.{port:x8}")));
            }
            await lkrun.WaitForOutputAsync("lkrun-guest: vsock cid 3");
            await lkrun.WaitForReadyAsync();
            var vm = new VsockTestVm(scratch, lkrun, await lkrun.LkrunPidAsync());
            await vm.MakeShellPlainAsync();
            return vm;
        }
        catch
        {
            await lkrun.DisposeAsync();
            scratch.Dispose();
            throw;
        }
    }

    public string GuestSocket(uint port) => Path.Combine(StateDirectory, $"guest.{port:x8}");

    public string HostSocket(uint port) => Path.Combine(StateDirectory, $"00000002.{port:x8}");

    public Socket ConnectGuestPort(uint port)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(GuestSocket(port)));
        return socket;
    }

    public Socket ListenHostPort(uint port)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(HostSocket(port)));
        socket.Listen(16);
        return socket;
    }

    /// <summary>The number of descriptors lkrun holds open.</summary>
    public int LkrunDescriptors => Directory.GetFileSystemEntries($"/proc/{LkrunPid}/fd").Length;

    /// <summary>lkrun's resident memory in bytes.</summary>
    public long LkrunResidentBytes =>
        long.Parse(File.ReadLines($"/proc/{LkrunPid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;

    /// <summary>Runs a shell command on the guest console; returns what it printed and its exit status.</summary>
    public Task<(string Output, int Status)> RunInGuestAsync(string command, TimeSpan timeout) => _lkrun.RunOnConsoleAsync(command, timeout);

    public async ValueTask DisposeAsync()
    {
        await _lkrun.SignalAsync(Posix.SIGTERM);
        Assert.Equal(0, await _lkrun.WaitForExitAsync());
        // Every socket lkrun made for vsock is gone with it.
        Assert.Empty(Directory.GetFiles(StateDirectory, "guest.*"));
        Assert.False(File.Exists(Path.Combine(StateDirectory, "vsock.sock")));
        await _lkrun.DisposeAsync();
        _scratch.Dispose();
    }

    /// <summary>
    /// Quietens the console shell: no prompts, and no job notices ("[1]+ Done") that could land inside a later
    /// command's output.
    /// </summary>
    private async Task MakeShellPlainAsync()
    {
        await _lkrun.TypeAsync("set +m; PS1=''; PS2=''\r");
        Assert.Equal(0, (await RunInGuestAsync("true", TimeSpan.FromSeconds(60))).Status);
    }
}
