#:project ../src/Lkrun.Services/Lkrun.Services.csproj
// The measuring side of bench/vsock.sh: boots the test guest once under QEMU with both lkrun's vhost-user vsock
// device and a QEMU virtio-serial port on a unix-socket chardev, then alternates the same transfers over both.
// The guest's initrd must hold /bin/vsock-zero-send (bench/vsock-zero-send.c), which vsock.sh adds.
// Usage: dotnet run -c Release bench/vsock-bench.cs -- GUEST_PREFIX SIZE_MIB RUNS PINGS
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Lkrun.Services.State;
using Lkrun.Services.Vsock;

var prefix = args[0];
var size = int.Parse(args[1]) << 20;
var runs = int.Parse(args[2]);
var pings = int.Parse(args[3]);

var directory = Directory.CreateTempSubdirectory("lkb-").FullName;
await using var sockets = UnixSocketFrontEnd.Create(new StateLayout(directory), [5000, 5001, 5002]);
await using var device = VsockDevice.Start(sockets, Path.Combine(directory, "vsock.sock"), 3);
using var qemu = StartQemu(prefix, directory);
try
{
    var console = await GuestShell.ConnectAsync(Path.Combine(directory, "console.sock"), qemu);
    await console.WaitForAsync("lkrun-guest: ready", TimeSpan.FromSeconds(180));
    await console.MakePlainAsync();
    var port = (await console.RunAsync("for p in /sys/class/virtio-ports/*; do [ \"$(cat $p/name)\" = bench ] && echo /dev/${p##*/}; done")).Trim();
    if (!port.StartsWith("/dev/vport", StringComparison.Ordinal))
    {
        throw new InvalidOperationException($"no virtio-serial port named bench in the guest: {port}");
    }

    using var serial = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    await serial.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(directory, "serial.sock")));
    var payload = new byte[1 << 20];
    new Random(1).NextBytes(payload);

    var results = new Dictionary<string, List<double>>();
    async Task Measure(string name, Func<Task<double>> measure)
    {
        Console.Error.Write($"  {name}: ");
        var value = await measure();
        Console.Error.WriteLine(value.ToString("F1"));
        (results.TryGetValue(name, out var list) ? list : results[name] = []).Add(value);
    }

    for (var run = 0; run < runs; run++)
    {
        Console.Error.WriteLine($"run {run + 1} of {runs}");
        await Measure("vsock host->guest", async () => size / await VsockHostToGuest());
        await Measure("serial host->guest", async () => size / await SerialHostToGuest());
        await Measure("vsock guest->host", async () => size / await VsockGuestToHost());
        await Measure("serial guest->host", async () => size / await SerialGuestToHost());
        await Measure("vsock round trip", VsockRoundTrip);
        await Measure("serial round trip", SerialRoundTrip);
    }

    double Median(string name)
    {
        var sorted = results[name].Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    string Runs(string name, string format) => string.Join(" ", results[name].Select(value => value.ToString(format)));

    Out($"{"",-36} {"vsock (lkrun)",14} {"virtio-serial",14} {"vsock/serial",13}");
    foreach (var (label, vsock, serialName, unit, higherIsBetter) in new[]
    {
        ("host -> guest throughput", "vsock host->guest", "serial host->guest", "MB/s", true),
        ("guest -> host throughput", "vsock guest->host", "serial guest->host", "MB/s", true),
        ("round trip of 1 byte", "vsock round trip", "serial round trip", "us", false),
    })
    {
        var (v, s) = (Median(vsock), Median(serialName));
        Out($"{label + " (" + unit + ")",-36} {v,14:F1} {s,14:F1} {v / s,12:F2}x{(higherIsBetter ? "" : " (lower is better)")}");
    }
    Out("");
    Out("every run (MB/s or us):");
    foreach (var name in results.Keys)
    {
        Out($"  {name,-36} {Runs(name, "F1")}");
    }

    // Host to guest: the guest's discard service answers with the byte count once it read everything.
    async Task<double> VsockHostToGuest()
    {
        using var socket = Connect(directory, 5001);
        var watch = Stopwatch.StartNew();
        await SendAsync(socket, size);
        socket.Shutdown(SocketShutdown.Send);
        var reply = await ReadToEndAsync(socket);
        var elapsed = watch.Elapsed.TotalSeconds;
        Check(Encoding.ASCII.GetString(reply) == $"{size}\n", "discard reply");
        return elapsed * 1e6;
    }

    // Host to guest over the serial port: dd reads the bytes in the guest, then writes "done" back.
    async Task<double> SerialHostToGuest()
    {
        await console.RunAsync($"(dd if={port} of=/dev/null bs=65536 count={size / 65536} iflag=fullblock 2>/dev/null; echo done > {port}) &");
        var watch = Stopwatch.StartNew();
        await SendAsync(serial, size);
        await ReadUntilAsync(serial, "done\n");
        return watch.Elapsed.TotalSeconds * 1e6;
    }

    // Guest to host: the guest connects to a host listener (00000002.PORT) and writes zeros from one buffer, as dd
    // does into the serial port; timed from the first to the last byte the host receives.
    async Task<double> VsockGuestToHost()
    {
        var path = new StateLayout(directory).HostVsockSocket(7000);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        await console.RunAsync($"vsock-zero-send 2 7000 {size} &");
        using var connection = await listener.AcceptAsync();
        var (received, seconds) = await ReceiveTimedAsync(connection, size, untilEnd: true);
        Check(received == size, "vsock-zero-send byte count");
        File.Delete(path);
        return seconds * 1e6;
    }

    async Task<double> SerialGuestToHost()
    {
        await console.RunAsync($"dd if=/dev/zero of={port} bs=65536 count={size / 65536} 2>/dev/null &");
        var (received, seconds) = await ReceiveTimedAsync(serial, size, untilEnd: false);
        Check(received == size, "serial byte count");
        return seconds * 1e6;
    }

    async Task<double> VsockRoundTrip()
    {
        using var socket = Connect(directory, 5000);
        return await PingPongAsync(socket);
    }

    async Task<double> SerialRoundTrip()
    {
        await console.RunAsync($"cat 0<>{port} 1>&0 & echo $! > /tmp/serial-echo");
        var microseconds = await PingPongAsync(serial);
        await console.RunAsync("kill $(cat /tmp/serial-echo)");
        return microseconds;
    }

    async Task<double> PingPongAsync(Socket socket)
    {
        // The first tenth warms both paths up and is not timed.
        var one = new byte[1];
        var watch = new Stopwatch();
        for (var i = 0; i < pings / 10 + pings; i++)
        {
            if (i == pings / 10)
            {
                watch.Start();
            }

            one[0] = (byte)i;
            await socket.SendAsync(one);
            Check(await socket.ReceiveAsync(one) == 1 && one[0] == (byte)i, "echoed byte");
        }

        return watch.Elapsed.TotalMicroseconds / pings;
    }

    async Task SendAsync(Socket socket, int count)
    {
        for (var sent = 0; sent < count; sent += payload.Length)
        {
            await socket.SendAsync(payload.AsMemory(0, Math.Min(payload.Length, count - sent)));
        }
    }
}
finally
{
    qemu.Kill(entireProcessTree: true);
    await qemu.WaitForExitAsync();
    Directory.Delete(directory, recursive: true);
}

static void Out(string line) => Console.WriteLine(line);

static void Check(bool condition, string what)
{
    if (!condition)
    {
        throw new InvalidOperationException($"check failed: {what}");
    }
}

static Socket Connect(string directory, uint port)
{
    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    socket.Connect(new UnixDomainSocketEndPoint(new StateLayout(directory).GuestVsockSocket(port)));
    return socket;
}

static async Task<byte[]> ReadToEndAsync(Socket socket)
{
    using var stream = new MemoryStream();
    var buffer = new byte[4096];
    while (await socket.ReceiveAsync(buffer) is var count and > 0)
    {
        stream.Write(buffer, 0, count);
    }

    return stream.ToArray();
}

static async Task ReadUntilAsync(Socket socket, string marker)
{
    var text = new StringBuilder();
    var buffer = new byte[64];
    while (!text.ToString().Contains(marker, StringComparison.Ordinal))
    {
        var count = await socket.ReceiveAsync(buffer);
        Check(count > 0, "serial reply");
        text.Append(Encoding.ASCII.GetString(buffer, 0, count));
    }
}

static async Task<(long Received, double Seconds)> ReceiveTimedAsync(Socket socket, int expected, bool untilEnd)
{
    var buffer = new byte[1 << 20];
    var watch = new Stopwatch();
    long received = 0;
    while (untilEnd || received < expected)
    {
        var count = await socket.ReceiveAsync(buffer.AsMemory(0, untilEnd ? buffer.Length : (int)Math.Min(buffer.Length, expected - received)));
        if (count == 0)
        {
            break;
        }

        if (received == 0)
        {
            watch.Start();
        }

        received += count;
    }

    return (received, watch.Elapsed.TotalSeconds);
}

static Process StartQemu(string prefix, string directory)
{
    var start = new ProcessStartInfo("qemu-system-x86_64") { RedirectStandardInput = true };
    foreach (var argument in new[]
    {
        "-object", "memory-backend-memfd,id=mem0,size=512M,share=on",
        "-machine", "q35,memory-backend=mem0", "-accel", "tcg", "-m", "512", "-smp", "1",
        "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", prefix + "-kernel", "-initrd", prefix + "-initrd.img", "-append", File.ReadAllText(prefix + "-cmdline").Trim(),
        "-chardev", $"socket,id=con,path={directory}/console.sock,server=on,wait=off", "-serial", "chardev:con",
        "-chardev", $"socket,id=vsock0,path={directory}/vsock.sock", "-device", "vhost-user-vsock-pci,chardev=vsock0",
        "-device", "virtio-serial-pci",
        "-chardev", $"socket,id=bench,path={directory}/serial.sock,server=on,wait=off", "-device", "virtserialport,chardev=bench,name=bench",
    })
    {
        start.ArgumentList.Add(argument);
    }

    return Process.Start(start) ?? throw new InvalidOperationException("qemu-system-x86_64 did not start");
}

/// <summary>The guest's serial console as a shell: commands in, output until a marker.</summary>
sealed class GuestShell(Socket socket)
{
    private readonly StringBuilder _text = new();
    private int _number;

    public static async Task<GuestShell> ConnectAsync(string path, Process qemu)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
                return new GuestShell(socket);
            }
            catch (SocketException) when (attempt < 300 && !qemu.HasExited)
            {
                await Task.Delay(100);
            }
        }
    }

    public async Task WaitForAsync(string marker, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        var buffer = new byte[4096];
        while (!_text.ToString().Contains(marker, StringComparison.Ordinal))
        {
            using var cancel = new CancellationTokenSource(deadline - DateTime.UtcNow);
            int count;
            try
            {
                count = await socket.ReceiveAsync(buffer, cancel.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"no {marker.Trim()} from the guest; its console shows: {_text}");
            }

            _text.Append(Encoding.UTF8.GetString(buffer, 0, count).Replace("\r", ""));
        }
    }

    /// <summary>
    /// Quietens the console shell: no prompts, and no job notices ("[1]+ Done") that could land inside a later
    /// command's output.
    /// </summary>
    public async Task MakePlainAsync()
    {
        await socket.SendAsync(Encoding.UTF8.GetBytes("set +m; PS1=''; PS2=''\n"));
        await RunAsync("true");
    }

    /// <summary>Runs a command and returns its output, found between markers the echoed command line cannot contain.</summary>
    public async Task<string> RunAsync(string command)
    {
        var number = ++_number;
        _text.Clear();
        // One line, so that nothing is typed ahead of the command; "&" already separates a background command.
        var separator = command.TrimEnd().EndsWith('&') ? " " : "; ";
        await socket.SendAsync(Encoding.UTF8.GetBytes($"echo \"__begin\"\"{number}__\"; {command}{separator}echo \"__end\"\"{number}__\"\n"));
        var begin = $"__begin{number}__\n";
        var end = $"__end{number}__\n";
        await WaitForAsync(end, TimeSpan.FromSeconds(60));
        var text = _text.ToString();
        var start = text.IndexOf(begin, StringComparison.Ordinal) + begin.Length;
        return text[start..text.IndexOf(end, StringComparison.Ordinal)];
    }
}
