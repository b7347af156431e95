using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Lkrun.Services.Vsock;

namespace Lkrun.Integration.Tests.Vsock;

/// <summary>
/// The test guest booted on QEMU with lkrun's vsock device attached as vhost-user, the way the engine attaches it:
/// guest RAM in a shared memfd, the device listening before QEMU starts. The console is a unix socket through which
/// tests run commands in the guest's shell. Images come from LKRUN_TEST_IMAGES (default out/images):
/// guest/guest-kernel, guest/guest-initrd.img and, if present, guest/guest-cmdline.
/// </summary>
internal sealed class VsockTestVm : IAsyncDisposable
{
    public const uint GuestCid = 3;
    public const uint EchoPort = 5000;
    public const uint DiscardPort = 5001;
    public const uint SourcePort = 5002;

    /// <summary>A guest port nothing listens on inside the guest.</summary>
    public const uint SilentPort = 5009;

    public static readonly TimeSpan BootTimeout = TimeSpan.FromSeconds(180);

    private const int MemoryMiB = 512;

    private readonly StringBuilder _console = new();
    private readonly object _gate = new();
    private readonly List<string> _deviceLog;
    private Process? _qemu;
    private Socket? _consoleSocket;
    private Task? _consoleReader;
    private int _commandNumber;

    private VsockTestVm(string directory, VsockDevice device, List<string> deviceLog)
    {
        StateDirectory = directory;
        Device = device;
        _deviceLog = deviceLog;
    }

    public string StateDirectory { get; }

    public VsockDevice Device { get; }

    public string Console
    {
        get
        {
            lock (_gate)
            {
                return _console.ToString();
            }
        }
    }

    public IReadOnlyList<string> DeviceLog
    {
        get
        {
            lock (_deviceLog)
            {
                return [.. _deviceLog];
            }
        }
    }

    public static string ImagesRoot =>
        Environment.GetEnvironmentVariable("LKRUN_TEST_IMAGES") ?? Path.Combine(RepositoryRoot(), "out", "images");

    /// <summary>Boots the guest; with <paramref name="allowReboot"/> a guest reboot resets the machine instead of ending QEMU.</summary>
    public static async Task<VsockTestVm> BootAsync(CancellationToken cancellation, bool allowReboot = false)
    {
        var prefix = Path.Combine(ImagesRoot, "guest", "guest");
        Assert.True(File.Exists(prefix + "-kernel"), $"{prefix}-kernel is missing: build the test images with tests/images/build.sh");
        Assert.True(File.Exists(prefix + "-initrd.img"), $"{prefix}-initrd.img is missing: build the test images with tests/images/build.sh");
        var cmdline = File.Exists(prefix + "-cmdline") ? File.ReadAllText(prefix + "-cmdline").Trim() : "console=ttyS0";

        // Short: the socket paths below must fit sun_path.
        var directory = Directory.CreateTempSubdirectory("lkv-").FullName;
        VsockTestVm? vm = null;
        try
        {
            var log = new List<string>();
            var device = VsockDevice.Start(
                new VsockDeviceOptions(Path.Combine(directory, "vsock.sock"), directory, GuestCid, [EchoPort, DiscardPort, SourcePort, SilentPort]),
                line =>
                {
                    lock (log)
                    {
                        log.Add(line);
                    }
                });
            vm = new VsockTestVm(directory, device, log);
            vm.StartQemu(prefix, cmdline, allowReboot);
            await vm.ConnectConsoleAsync(cancellation);
            await vm.WaitForConsoleAsync("lkrun-guest: ready", BootTimeout, cancellation);
            await vm.MakeShellPlainAsync(cancellation);
            return vm;
        }
        catch
        {
            if (vm is not null)
            {
                await vm.DisposeAsync();
            }
            else
            {
                Directory.Delete(directory, recursive: true);
            }

            throw;
        }
    }

    public string GuestSocket(uint port) => VsockDevice.GuestSocketPath(StateDirectory, port);

    public string HostSocket(uint port) => VsockDevice.HostSocketPath(StateDirectory, port);

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

    /// <summary>
    /// Quietens the console shell: no prompts, and no job notices ("[1]+ Done") that could land inside a later
    /// command's output.
    /// </summary>
    private async Task MakeShellPlainAsync(CancellationToken cancellation)
    {
        await _consoleSocket!.SendAsync("set +m; PS1=''; PS2=''\n"u8.ToArray(), cancellation);
        Assert.Equal(0, (await RunInGuestAsync("true", TimeSpan.FromSeconds(60), cancellation)).Status);
    }

    /// <summary>Reboots the guest (reboot -f) and waits until it is ready again.</summary>
    public async Task RebootAsync(CancellationToken cancellation)
    {
        var start = Console.Length;
        await _consoleSocket!.SendAsync("reboot -f\n"u8.ToArray(), cancellation);
        await WaitForConsoleAsync("lkrun-guest: ready", BootTimeout, cancellation, start);
        await MakeShellPlainAsync(cancellation);
    }

    /// <summary>Runs a shell command on the guest console; returns what it printed and its exit status.</summary>
    public async Task<(string Output, int Status)> RunInGuestAsync(string command, TimeSpan timeout, CancellationToken cancellation)
    {
        var number = Interlocked.Increment(ref _commandNumber);
        var start = Console.Length;
        // The markers are spelt differently in the echoed command line than in the output they produce.
        var begin = $"__begin_{number}__\n";
        var end = $"__end_{number}__ ";
        // One line, so that nothing is typed ahead of the command.
        await _consoleSocket!.SendAsync(Encoding.UTF8.GetBytes($"echo \"__begin_\"\"{number}__\"; {command}; echo \"__end_\"\"{number}__ $?\"\n"), cancellation);
        var text = await WaitForConsoleAsync(end, timeout, cancellation, start);
        var outputStart = text.IndexOf(begin, StringComparison.Ordinal) + begin.Length;
        var outputEnd = text.IndexOf(end, StringComparison.Ordinal);
        var statusText = text[(outputEnd + end.Length)..];
        var status = int.Parse(statusText[..statusText.IndexOf('\n')].Trim());
        return (text[outputStart..outputEnd], status);
    }

    public async ValueTask DisposeAsync()
    {
        if (_qemu is { } qemu)
        {
            try
            {
                qemu.Kill(entireProcessTree: true);
                await qemu.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }

            qemu.Dispose();
        }

        _consoleSocket?.Dispose();
        if (_consoleReader is not null)
        {
            await _consoleReader.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        await Device.DisposeAsync();
        try
        {
            Directory.Delete(StateDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private void StartQemu(string prefix, string cmdline, bool allowReboot)
    {
        var start = new ProcessStartInfo("qemu-system-x86_64")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in new[]
        {
            "-object", $"memory-backend-memfd,id=mem0,size={MemoryMiB}M,share=on",
            "-machine", "q35,memory-backend=mem0", "-accel", "tcg", "-m", $"{MemoryMiB}", "-smp", "1",
            "-nodefaults", "-display", "none",
            "-kernel", prefix + "-kernel", "-initrd", prefix + "-initrd.img", "-append", cmdline,
            "-chardev", $"socket,id=con,path={Path.Combine(StateDirectory, "console.sock")},server=on,wait=off", "-serial", "chardev:con",
            "-chardev", $"socket,id=vsock0,path={Path.Combine(StateDirectory, "vsock.sock")}",
            "-device", "vhost-user-vsock-pci,chardev=vsock0",
        })
        {
            start.ArgumentList.Add(argument);
        }

        if (!allowReboot)
        {
            start.ArgumentList.Add("-no-reboot");
        }

        _qemu = Process.Start(start) ?? throw new InvalidOperationException("qemu-system-x86_64 did not start");
        _qemu.OutputDataReceived += (_, e) => AppendConsole(e.Data);
        _qemu.ErrorDataReceived += (_, e) => AppendConsole(e.Data is null ? null : $"[qemu] {e.Data}");
        _qemu.BeginOutputReadLine();
        _qemu.BeginErrorReadLine();
    }

    private void AppendConsole(string? line)
    {
        if (line is not null)
        {
            lock (_gate)
            {
                _console.Append(line).Append('\n');
            }
        }
    }

    private async Task ConnectConsoleAsync(CancellationToken cancellation)
    {
        var path = Path.Combine(StateDirectory, "console.sock");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellation);
                _consoleSocket = socket;
                break;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && _qemu is { HasExited: false })
            {
                await Task.Delay(100, cancellation);
            }
        }

        _consoleReader = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            while (await _consoleSocket.ReceiveAsync(buffer) is var count and > 0)
            {
                lock (_gate)
                {
                    _console.Append(Encoding.UTF8.GetString(buffer, 0, count).Replace("\r", ""));
                }
            }
        });
    }

    private async Task<string> WaitForConsoleAsync(string text, TimeSpan timeout, CancellationToken cancellation, int from = 0)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var console = Console;
            var found = console.IndexOf(text, from, StringComparison.Ordinal);
            if (found >= 0 && console.IndexOf('\n', found) >= 0)
            {
                return console[from..];
            }

            if (DateTime.UtcNow > deadline || _qemu is { HasExited: true })
            {
                throw new TimeoutException($"no \"{text}\" on the guest console; it shows:\n{console[Math.Max(from, console.Length - 3000)..]}");
            }

            await Task.Delay(50, cancellation);
        }
    }

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "lkrun.slnx")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"no lkrun checkout above {AppContext.BaseDirectory}");
    }
}
