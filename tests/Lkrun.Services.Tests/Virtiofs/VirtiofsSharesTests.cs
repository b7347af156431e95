using System.Diagnostics;
using Lkrun.Services.Hosting;
using Lkrun.Services.Tests.Infrastructure;
using Lkrun.Services.Virtiofs;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Virtiofs;

/// <summary>The shares' virtiofsd processes, supervised without a VM: Debian's real virtiofsd, and scripts that fail on purpose.</summary>
public sealed class VirtiofsSharesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-vfs-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private StateLayout Layout => new(Directory.CreateDirectory(Path.Combine(_dir, "state")).FullName);

    private SharedDirectorySpec Share(string name, bool readOnly = false) =>
        new(Directory.CreateDirectory(Path.Combine(_dir, name)).FullName, name, readOnly);

    private static Virtiofsd Debian => new(Virtiofsd.DebianPath, Environment.IsPrivilegedProcess);

    /// <summary>A stand-in for virtiofsd: a shell script with the given body.</summary>
    private Virtiofsd Script(string body)
    {
        var path = Path.Combine(_dir, "fake-virtiofsd");
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return new Virtiofsd(path, AsRoot: true);
    }

    private const string SaysReady = "echo 'virtio_session_mount: Waiting for vhost-user socket connection...' >&2";

    /// <summary>Processes whose command line mentions <paramref name="text"/> (a share's unique path), zombies aside.</summary>
    private static List<int> ProcessesMentioning(string text) =>
        [.. Directory.GetDirectories("/proc")
            .Select(Path.GetFileName)
            .Where(name => name!.All(char.IsAsciiDigit))
            .Select(int.Parse!)
            .Where(pid =>
            {
                try
                {
                    var stat = File.ReadAllText($"/proc/{pid}/stat");
                    return stat[(stat.LastIndexOf(')') + 2)] != 'Z'
                        && File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Contains(text, StringComparison.Ordinal);
                }
                catch (IOException)
                {
                    return false;
                }
            })];

    [Fact]
    public async Task Each_share_gets_a_virtiofsd_on_a_private_socket_and_none_outlives_the_service()
    {
        var layout = Layout;
        SharedDirectorySpec[] shares = [Share("first"), Share("second", readOnly: true)];
        var service = await VirtiofsShares.StartAsync(Debian, shares, layout, TestContext.Current.CancellationToken);
        try
        {
            Assert.Equal(
                [new SharedDirectoryAttachment("first", layout.VirtiofsSocket(0)), new SharedDirectoryAttachment("second", layout.VirtiofsSocket(1))],
                service.Attachments);
            for (var i = 0; i < shares.Length; i++)
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(layout.VirtiofsSocket(i)));
                Assert.Contains("Waiting for vhost-user socket connection", File.ReadAllText(layout.VirtiofsLog(i)));
                Assert.NotEmpty(ProcessesMentioning($"source={shares[i].Path} "));
            }
            Assert.False(service.Completion.IsCompleted);
        }
        finally
        {
            await service.DisposeAsync();
        }
        foreach (var share in shares)
        {
            // virtiofsd's sandboxed child follows its parent on a parent-death signal.
            FileLocks.WaitUntil(() => ProcessesMentioning($"source={share.Path} ").Count == 0, $"the virtiofsd of {share.Path} to end");
        }
        Assert.False(File.Exists(layout.VirtiofsSocket(0)));
        Assert.False(File.Exists(layout.VirtiofsSocket(1)));
        Assert.True(File.Exists(layout.VirtiofsLog(0)));
        Assert.True(service.Completion.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task A_killed_virtiofsd_fails_the_service_with_one_line_naming_the_share()
    {
        var share = Share("killed");
        await using var service = await VirtiofsShares.StartAsync(Debian, [share], Layout, TestContext.Current.CancellationToken);
        var outer = ProcessesMentioning($"source={share.Path} ").Min();
        Process.GetProcessById(outer).Kill();
        var error = await Assert.ThrowsAsync<VirtiofsException>(() => service.Completion.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
        Assert.StartsWith($"the virtiofsd of -virtiofs {share.Path} stopped (exit code 137)", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public async Task A_virtiofsd_that_fails_after_starting_is_reported_with_what_it_said()
    {
        var share = Share("fails");
        await using var service = await VirtiofsShares.StartAsync(Script($"{SaysReady}\nsleep 0.2\necho 'fv_queue_thread: something broke' >&2\nexit 5"), [share], Layout, TestContext.Current.CancellationToken);
        var error = await Assert.ThrowsAsync<VirtiofsException>(() => service.Completion.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
        Assert.StartsWith($"the virtiofsd of -virtiofs {share.Path} stopped (exit code 5); it said: ", error.Message);
        Assert.EndsWith("fv_queue_thread: something broke", error.Message);
    }

    [Fact]
    public async Task A_virtiofsd_that_ends_cleanly_has_seen_qemu_go_and_is_no_failure()
    {
        await using var service = await VirtiofsShares.StartAsync(Script($"{SaysReady}\nexit 0"), [Share("clean")], Layout, TestContext.Current.CancellationToken);
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.False(service.Completion.IsCompleted);
    }

    [Fact]
    public async Task A_virtiofsd_that_cannot_start_is_one_line_with_its_words_and_leaves_no_socket()
    {
        var layout = Layout;
        var share = Share("broken");
        var error = await Assert.ThrowsAsync<VirtiofsException>(() => VirtiofsShares.StartAsync(
            Script($"case \"$*\" in *broken*) echo 'setgroups() failed with error=1:Operation not permitted' >&2; exit 1;; esac\n{SaysReady}\nexec sleep 600"),
            [Share("fine"), share], layout, TestContext.Current.CancellationToken));
        Assert.Equal($"-virtiofs {share.Path}: virtiofsd failed to start (exit code 1); it said: setgroups() failed with error=1:Operation not permitted", error.Message);
        Assert.Empty(Directory.GetFiles(layout.Directory, "*.sock"));
    }

    [Fact]
    public async Task The_listening_socket_reaches_virtiofsd_blocking_and_lkrun_keeps_no_copy()
    {
        // The stand-in reports the status flags of the descriptor it was given, then ends as virtiofsd does when QEMU goes.
        var layout = Layout;
        var script = Script($"fd=${{1#--fd=}}\ngrep '^flags' /proc/self/fdinfo/$fd >&2\n{SaysReady}\nexit 0");
        await using var service = await VirtiofsShares.StartAsync(script, [Share("passed")], layout, TestContext.Current.CancellationToken);
        var flags = File.ReadAllLines(layout.VirtiofsLog(0)).Single(line => line.StartsWith("flags", StringComparison.Ordinal));
        Assert.Equal(0, Convert.ToInt32(flags.Split('\t', ' ').Last(), 8) & 0x800);
        // Once the stand-in is gone nobody listens: lkrun's own copy was closed.
        FileLocks.WaitUntil(() => !Accepts(layout.VirtiofsSocket(0)), "the socket to stop accepting");
    }

    private static bool Accepts(string path)
    {
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        try
        {
            socket.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    public static TheoryData<string, bool> WhoAndHow => new()
    {
        { "root", true }, { "root", false }, { "nobody", true }, { "nobody", false }, { "subordinate", true }, { "subordinate", false },
    };

    /// <summary>
    /// The namespaces and the read-only bind of <see cref="VirtiofsdCommand"/>, with a shell that writes into the share
    /// in virtiofsd's place, for lkrun running as root, as nobody (no supplementary groups: lkrun's user mapped
    /// alone), and as a user of <c>/etc/subuid</c> with their groups (subordinate ids mapped too). The users other
    /// than root need these tests to run as root.
    /// </summary>
    [Theory]
    [MemberData(nameof(WhoAndHow))]
    public void The_host_refuses_writes_to_a_read_only_share_and_the_bind_stays_in_its_namespace(string who, bool readOnly)
    {
        Assert.SkipUnless(Environment.IsPrivilegedProcess, "needs root, to be root or to become another user");
        var share = Share("data", readOnly);
        var virtiofsd = new Virtiofsd(Virtiofsd.DebianPath, AsRoot: true);
        string[] asUser = [];
        if (who != "root")
        {
            var user = who == "nobody" ? "nobody" : File.ReadLines(SubordinateIds.UidFile).Select(line => line.Split(':')[0]).FirstOrDefault(IsUser);
            Assert.SkipWhen(user is null, $"no user of {SubordinateIds.UidFile} on this host");
            var uid = uint.Parse(Id("-u", user!));
            virtiofsd = new Virtiofsd(
                Virtiofsd.DebianPath,
                AsRoot: false,
                who == "nobody" ? null : SubordinateIds.Parse(user!, uid, File.ReadAllText(SubordinateIds.UidFile), File.ReadAllText(SubordinateIds.GidFile)));
            File.SetUnixFileMode(_dir, File.GetUnixFileMode(_dir) | UnixFileMode.OtherExecute);
            Process.Start("chown", [$"{uid}:{Id("-g", user!)}", share.Path]).WaitForExit();
            asUser = ["setpriv", $"--reuid={uid}", $"--regid={Id("-g", user!)}", who == "nobody" ? "--clear-groups" : "--init-groups", "--"];
        }
        var argv = VirtiofsdCommand.Build(virtiofsd, share, 7);
        string[] writer = ["sh", "-c", "echo data > \"$1/written\"", "writer", share.Path];
        var command = (string[])[.. asUser, .. argv.TakeWhile(arg => arg != Virtiofsd.DebianPath), .. writer];

        var run = Process.Start(new ProcessStartInfo(command[0], command[1..]) { RedirectStandardError = true })!;
        var error = run.StandardError.ReadToEnd();
        run.WaitForExit();

        if (readOnly)
        {
            Assert.NotEqual(0, run.ExitCode);
            Assert.Contains("Read-only file system", error);
            Assert.False(File.Exists(Path.Combine(share.Path, "written")));
        }
        else
        {
            Assert.True(run.ExitCode == 0, error);
            Assert.Equal("data\n", File.ReadAllText(Path.Combine(share.Path, "written")));
        }
        Assert.DoesNotContain(share.Path, File.ReadAllText("/proc/self/mountinfo"));
    }

    private static bool IsUser(string name) => name.Length > 0 && Id("-u", name).Length > 0;

    private static string Id(string option, string user)
    {
        var id = Process.Start(new ProcessStartInfo("id", [option, user]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = id.StandardOutput.ReadToEnd().Trim();
        id.WaitForExit();
        return id.ExitCode == 0 ? output : "";
    }

    [Fact]
    public void More_shares_than_the_state_dir_has_names_for_are_refused()
    {
        var shares = Enumerable.Range(0, StateLayout.MaxVirtiofsShares + 1).Select(i => new SharedDirectorySpec("/srv", $"t{i}", false)).ToList();
        var error = Assert.Throws<SpecException>(() => VirtiofsShares.Check(shares));
        Assert.Equal(2, error.ExitCode);
    }
}
