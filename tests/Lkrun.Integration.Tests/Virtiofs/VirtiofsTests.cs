using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Virtiofs;

/// <summary>
/// <c>-virtiofs</c> on QEMU: the guest mounts each share by its tag (a user-data script does, as a LinuxKit
/// image's onboot step would), through lkrun's virtiofsd on microvm (the test kernel's default machine) and q35.
/// </summary>
public sealed class VirtiofsTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    private string PoweroffGuest => _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.poweroff");

    private string Share(string name) => Directory.CreateDirectory(_scratch[name]).FullName;

    private static string[] Machine(string machine) => machine == "default" ? [] : ["-machine", machine];

    /// <summary>The control API's <c>GET /vm/inspect</c> of the VM whose state dir is <paramref name="state"/>.</summary>
    private static async Task<JsonElement> InspectAsync(string state)
    {
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellation) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(state, "control.sock")), cancellation);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        using var http = new HttpClient(handler);
        return JsonDocument.Parse(await http.GetStringAsync("http://lkrun/vm/inspect", TestContext.Current.CancellationToken)).RootElement;
    }

    private static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>The processes of the virtiofsd serving <paramref name="share"/> (its path is on their command line).</summary>
    private static List<int> VirtiofsdOf(string share) =>
        [.. Directory.GetDirectories("/proc")
            .Select(Path.GetFileName)
            .Where(name => name!.All(char.IsAsciiDigit))
            .Select(name => int.Parse(name!))
            .Where(pid =>
            {
                try
                {
                    return Posix.IsAlive(pid) && File.ReadAllText($"/proc/{pid}/cmdline").Split('\0').Contains($"source={share}");
                }
                catch (IOException)
                {
                    return false;
                }
            })];

    [Theory]
    [InlineData("default")]
    [InlineData("q35")]
    public async Task The_guest_reads_what_the_host_wrote_and_the_host_reads_what_the_guest_wrote(string machine)
    {
        var share = Share("share");
        var fromHost = new byte[1 << 20];
        new Random(20).NextBytes(fromHost);
        File.WriteAllBytes(Path.Combine(share, "from-host.bin"), fromHost);
        const string script = """
            #!/bin/sh
            mkdir -p /mnt/share
            mount -t virtiofs virtiofs0 /mnt/share || exit 9
            echo "guest-read $(sha256sum /mnt/share/from-host.bin | cut -d' ' -f1)"
            dd if=/dev/urandom of=/mnt/share/from-guest.bin bs=64k count=16 2>/dev/null
            sync
            echo "guest-wrote $(sha256sum /mnt/share/from-guest.bin | cut -d' ' -f1)"
            """;

        await using var lkrun = LkrunProcess.Run(
            _scratch["state"], ["-mem", "256", "-networking", "none", "-data", script, .. Machine(machine), "-virtiofs", share], PoweroffGuest);
        Assert.Equal(0, await lkrun.WaitForExitAsync());

        Assert.Contains("lkrun-guest: user-data exit 0", lkrun.Output);
        Assert.Contains($"guest-read {Sha256(fromHost)}", lkrun.Output);
        var fromGuest = File.ReadAllBytes(Path.Combine(share, "from-guest.bin"));
        Assert.Equal(1 << 20, fromGuest.Length);
        Assert.Contains($"guest-wrote {Sha256(fromGuest)}", lkrun.Output);
        Assert.True(File.Exists(Path.Combine(_scratch["state"], "virtiofs0.log")));
        Assert.Empty(Directory.GetFiles(_scratch["state"], "*.sock"));
    }

    [Theory]
    [InlineData("default")]
    [InlineData("q35")]
    public async Task A_read_only_share_refuses_writes_whatever_the_guest_mounts(string machine)
    {
        var share = Share("ro");
        File.WriteAllText(Path.Combine(share, "kept.txt"), "read me\n");
        // The guest mounts it read-write: the host refuses the writes all the same.
        const string script = """
            #!/bin/sh
            mkdir -p /mnt/ro
            mount -t virtiofs data /mnt/ro || exit 9
            echo "guest-read $(cat /mnt/ro/kept.txt)"
            if echo new > /mnt/ro/new.txt; then echo create-allowed; else echo create-refused; fi
            if echo changed > /mnt/ro/kept.txt; then echo change-allowed; else echo change-refused; fi
            if rm /mnt/ro/kept.txt; then echo remove-allowed; else echo remove-refused; fi
            """;

        await using var lkrun = LkrunProcess.Run(
            _scratch["state"], ["-mem", "256", "-networking", "none", "-data", script, .. Machine(machine), "-virtiofs", $"{share},tag=data,ro"], PoweroffGuest);
        Assert.Equal(0, await lkrun.WaitForExitAsync());

        Assert.Contains("guest-read read me", lkrun.Output);
        Assert.Contains("create-refused", lkrun.Output);
        Assert.Contains("change-refused", lkrun.Output);
        Assert.Contains("remove-refused", lkrun.Output);
        Assert.Contains("Read-only file system", lkrun.Output);
        Assert.Equal(["kept.txt"], Directory.GetFiles(share).Select(Path.GetFileName));
        Assert.Equal("read me\n", File.ReadAllText(Path.Combine(share, "kept.txt")));
    }

    [Fact]
    public async Task Two_shares_without_tags_are_virtiofs0_and_virtiofs1_in_flag_order()
    {
        var first = Share("first");
        var second = Share("second");
        File.WriteAllText(Path.Combine(first, "name"), "first\n");
        File.WriteAllText(Path.Combine(second, "name"), "second\n");
        const string script = """
            #!/bin/sh
            for tag in virtiofs0 virtiofs1; do
                mkdir -p /mnt/$tag
                mount -t virtiofs $tag /mnt/$tag && echo "tag $tag holds $(cat /mnt/$tag/name)"
            done
            """;

        await using var lkrun = LkrunProcess.Run(
            _scratch["state"], ["-mem", "256", "-networking", "none", "-data", script, "-virtiofs", first, "-virtiofs", second], PoweroffGuest);
        Assert.Equal(0, await lkrun.WaitForExitAsync());

        Assert.Contains("tag virtiofs0 holds first", lkrun.Output);
        Assert.Contains("tag virtiofs1 holds second", lkrun.Output);
    }

    [Theory]
    [InlineData(Posix.SIGTERM, 0)]
    [InlineData(Posix.SIGKILL, 137)]
    public async Task No_virtiofsd_outlives_the_vm(int signal, int exitCode)
    {
        var share = Share("share");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-networking", "none", "-virtiofs", share], TestImages.Guest);
        await lkrun.WaitForReadyAsync();
        Assert.NotEmpty(VirtiofsdOf(share));
        var inspected = (await InspectAsync(_scratch["state"])).GetProperty("devices").GetProperty("virtiofs").EnumerateArray()
            .Select(device => (device.GetProperty("sharedDir").GetString(), device.GetProperty("mountTag").GetString()));
        Assert.Equal([(share, "virtiofs0")], inspected);

        await lkrun.SignalAsync(signal);
        Assert.Equal(exitCode, await lkrun.WaitForExitAsync());
        // Killed with lkrun by their parent-death signals, which take a moment to arrive.
        await LkrunProcess.WaitUntilAsync(() => VirtiofsdOf(share).Count == 0, TimeSpan.FromSeconds(10), "virtiofsd to end with lkrun");
    }

    [Fact]
    public async Task A_virtiofsd_that_dies_while_the_vm_runs_stops_it_with_one_line_naming_the_share()
    {
        var share = Share("share");
        await using var lkrun = LkrunProcess.Run(_scratch["state"], ["-mem", "256", "-networking", "none", "-virtiofs", share], TestImages.Guest);
        await lkrun.WaitForReadyAsync();
        var qemu = await lkrun.QemuPidAsync();

        Posix.Signal(VirtiofsdOf(share).Min(), Posix.SIGKILL);
        Assert.Equal(1, await lkrun.WaitForExitAsync());
        Assert.Matches($"lkrun: the virtiofsd of -virtiofs {share} stopped \\(exit code 137\\).*; stopped the VM\n", lkrun.Error);
        Assert.False(Posix.IsAlive(qemu));
    }

    public static TheoryData<string, string[], int, string> BadShares => new()
    {
        { "a missing directory", ["-virtiofs", "{scratch}/absent"], 1, "-virtiofs {scratch}/absent: no such directory" },
        { "a file", ["-virtiofs", "{scratch}/file"], 1, "-virtiofs {scratch}/file: not a directory" },
        { "a tag twice", ["-virtiofs", "{scratch}/a,tag=same", "-virtiofs", "{scratch}/b,tag=same"], 2, "-virtiofs {scratch}/b: tag 'same' is used twice" },
        { "a default tag twice", ["-virtiofs", "{scratch}/a,tag=virtiofs1", "-virtiofs", "{scratch}/b"], 2, "-virtiofs {scratch}/b: tag 'virtiofs1' is used twice" },
    };

    [Theory]
    [MemberData(nameof(BadShares))]
    public async Task A_bad_share_is_one_line_and_creates_nothing(string what, string[] flags, int exitCode, string message)
    {
        Share("a");
        Share("b");
        File.WriteAllText(_scratch["file"], "");
        var image = _scratch.ImageWithCmdline(TestImages.Guest, "console=ttyS0");
        var before = Directory.GetFileSystemEntries(_scratch.Path).Order().ToList();

        await using var lkrun = LkrunProcess.Run(_scratch["state"], [.. flags.Select(flag => flag.Replace("{scratch}", _scratch.Path))], image);
        Assert.True(exitCode == await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)), what);
        Assert.Equal($"lkrun: {message.Replace("{scratch}", _scratch.Path)}\n", lkrun.Error);
        Assert.Equal(before, Directory.GetFileSystemEntries(_scratch.Path).Order().ToList());
    }

    [Fact]
    public async Task A_missing_virtiofsd_is_one_line_naming_the_package_and_creates_nothing()
    {
        var share = Share("share");
        await using var lkrun = LkrunProcess.Run(
            _scratch["state"], ["-virtiofs", share], TestImages.Guest, environment: new Dictionary<string, string> { ["LKRUN_VIRTIOFSD"] = "/nonexistent/virtiofsd" });
        Assert.Equal(1, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(
            "lkrun: -virtiofs needs virtiofsd, and /nonexistent/virtiofsd is missing; install it (Debian 12: apt-get install qemu-system-common) or set LKRUN_VIRTIOFSD to its path\n",
            lkrun.Error);
        Assert.False(Directory.Exists(_scratch["state"]));
    }

    /// <summary>
    /// lkrun run by a user who is not root (nobody, without supplementary groups): virtiofsd runs as root of a user
    /// namespace that maps nobody alone, so what the guest's root writes belongs to nobody on the host.
    /// </summary>
    [Fact]
    public async Task A_user_who_is_not_root_shares_directories_too()
    {
        Assert.SkipUnless(Environment.IsPrivilegedProcess, "needs root to run lkrun as nobody");
        File.SetUnixFileMode(_scratch.Path, File.GetUnixFileMode(_scratch.Path) | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        var share = Share("share");
        File.WriteAllText(Path.Combine(share, "from-host.txt"), "written by the host\n");
        var cache = Share("cache");
        var state = Share("state");
        foreach (var owned in new[] { share, cache, state, Path.Combine(share, "from-host.txt") })
        {
            Assert.Equal("", Command("chown", "nobody:nogroup", owned));
        }
        const string script = """
            #!/bin/sh
            mkdir -p /mnt/share
            mount -t virtiofs virtiofs0 /mnt/share || exit 9
            echo "guest-read $(cat /mnt/share/from-host.txt)"
            echo "written by the guest" > /mnt/share/from-guest.txt
            ls -ln /mnt/share/from-host.txt | awk '{ print "guest-sees-owner", $3 }'
            """;
        var lkrunCall = LkrunProcess.LkrunCommand(
            ["run", "-state", _scratch["state"], "-mem", "256", "-networking", "none", "-data", script, "-virtiofs", share, PoweroffGuest]);

        await using var lkrun = LkrunProcess.StartInShell(
            $"XDG_CACHE_HOME={cache} XDG_STATE_HOME={cache} setpriv --reuid=nobody --regid=nogroup --clear-groups -- {lkrunCall}", _scratch["state"]);
        Assert.Equal(0, await lkrun.WaitForExitAsync());

        Assert.Contains("guest-read written by the host", lkrun.Output);
        Assert.Contains("guest-sees-owner 0", lkrun.Output);
        var fromGuest = Path.Combine(share, "from-guest.txt");
        Assert.Equal("written by the guest\n", File.ReadAllText(fromGuest));
        Assert.Equal("nobody", Command("stat", "--format=%U", fromGuest));
    }

    private static string Command(string name, params string[] args)
    {
        using var command = System.Diagnostics.Process.Start(
            new System.Diagnostics.ProcessStartInfo(name, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = command.StandardOutput.ReadToEnd() + command.StandardError.ReadToEnd();
        command.WaitForExit();
        return output.Trim();
    }
}
