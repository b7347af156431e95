using System.Diagnostics;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Run;

/// <summary>
/// File systems that fail a user: a state dir whose disk fills up while lkrun writes to it, read-only mounts, and
/// -disk paths that are not disk images. Each ends with one line naming the file, exit 1 (2 for a bad flag), and
/// nothing created or half-written. The small and read-only file systems are tmpfs mounts, which needs root.
/// </summary>
public sealed class FileSystemFaultTests : IDisposable
{
    private readonly Scratch _scratch = new();
    private readonly List<string> _mounts = [];

    public void Dispose()
    {
        foreach (var mount in _mounts)
        {
            Run("umount", "-l", mount);
        }
        _scratch.Dispose();
    }

    [Fact]
    public async Task A_state_dir_disk_that_fills_while_data_iso_is_written_is_named_and_nothing_is_left()
    {
        var small = Mount("small", "size=1m");
        var data = _scratch["user-data"];
        File.WriteAllBytes(data, new byte[2 << 20]);
        var (exitCode, error) = await RunLkrunAsync(Path.Combine(small, "state"), "-data-file", data);
        Assert.Equal(1, exitCode);
        Assert.Equal($"lkrun: Failed to create '{small}/state/data.iso' with allocation size '2152448' because the disk was full.", error);
        // The tests keep the per-user state home (the VM registry) next to the state dir; no VM is left in it.
        Assert.Equal([Path.Combine(small, "xdg-state")], Directory.GetFileSystemEntries(small));
        Assert.DoesNotContain(Path.Combine(small, "state"), File.ReadAllText(Path.Combine(small, "xdg-state", "lkrun", "vms.json")));
    }

    [Fact]
    public async Task A_disk_that_cannot_be_created_on_a_full_file_system_is_named_and_nothing_is_left()
    {
        var full = Mount("full", "size=1m");
        FillUp(Path.Combine(full, "filler"));
        var disk = Path.Combine(full, "disk.qcow2");
        var (exitCode, error) = await RunLkrunAsync(_scratch["state"], "-disk", $"{disk},size=64,format=qcow2");
        Assert.Equal(1, exitCode);
        Assert.StartsWith($"lkrun: -disk {disk}: qemu-img could not create it: ", error);
        Assert.Contains("No space left on device", error);
        Assert.False(File.Exists(disk));
        Assert.False(Directory.Exists(_scratch["state"]));
    }

    [Theory]
    [InlineData("read-only state dir", 1, "lkrun: state dir {ro}/state: cannot create it in {ro} (Read-only file system)")]
    [InlineData("disk on a read-only mount", 1, "lkrun: -disk {ro}/disk.raw: cannot create it in {ro} (Read-only file system)")]
    [InlineData("disk that is a directory", 2, "lkrun: -disk {scratch}/directory: is a directory")]
    [InlineData("disk that is a FIFO", 2, "lkrun: -disk {scratch}/fifo: not a regular file or a block device")]
    public async Task Unusable_state_dirs_and_disks_are_one_line_each_and_nothing_is_created(string situation, int expectedExit, string expected)
    {
        var ro = Mount("ro", "ro,size=1m");
        Directory.CreateDirectory(_scratch["directory"]);
        Run("mkfifo", _scratch["fifo"]);
        var state = situation == "read-only state dir" ? Path.Combine(ro, "state") : _scratch["state"];
        string[] flags = situation switch
        {
            "disk on a read-only mount" => ["-disk", $"{ro}/disk.raw,size=8"],
            "disk that is a directory" => ["-disk", _scratch["directory"]],
            "disk that is a FIFO" => ["-disk", _scratch["fifo"]],
            _ => [],
        };
        var (exitCode, error) = await RunLkrunAsync(state, flags);
        Assert.Equal(expectedExit, exitCode);
        Assert.Equal(expected.Replace("{ro}", ro).Replace("{scratch}", _scratch.Path), error);
        Assert.False(Directory.Exists(_scratch["state"]));
        Assert.Empty(Directory.GetFileSystemEntries(ro));
    }

    [Fact]
    public async Task A_device_lkrun_may_not_open_is_one_line_and_nothing_is_created()
    {
        // lkrun runs as nobody; the device node is root's, mode 0600 (a loop device's numbers, never opened).
        var device = _scratch["device"];
        Run("mknod", "-m", "600", device, "b", "7", "0");
        var open = _scratch["open"];
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, UnixFileMode.StickyBit | (UnixFileMode)0x1ff);
        File.SetUnixFileMode(_scratch.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        var state = Path.Combine(open, "state");
        var command = $"setpriv --reuid=65534 --regid=65534 --clear-groups {LkrunProcess.LkrunCommand(["run", "-state", state, "-networking", "none", "-disk", device, TestImages.Guest])}";
        await using var lkrun = LkrunProcess.StartInShell(command, state);
        Assert.Equal(1, await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal($"lkrun: -disk {device}: cannot open it for reading and writing (Permission denied)", LastLine(lkrun.Error));
        Assert.DoesNotContain(Directory.GetFileSystemEntries(open), entry => !entry.EndsWith("xdg-state", StringComparison.Ordinal));
    }

    private async Task<(int ExitCode, string LastErrorLine)> RunLkrunAsync(string state, params string[] flags)
    {
        await using var lkrun = LkrunProcess.Run(state, ["-networking", "none", .. flags], TestImages.Guest);
        var exitCode = await lkrun.WaitForExitAsync(TimeSpan.FromSeconds(30));
        return (exitCode, LastLine(lkrun.Error));
    }

    private string Mount(string name, string options)
    {
        Assert.True(Environment.UserName == "root", "these tests mount small and read-only tmpfs file systems, which needs root");
        var directory = _scratch[name];
        Directory.CreateDirectory(directory);
        Run("mount", "-t", "tmpfs", "-o", options, "tmpfs", directory);
        _mounts.Add(directory);
        return directory;
    }

    private static void FillUp(string path)
    {
        // Unbuffered, so that nothing is left to fail again when the file is closed.
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
        var block = new byte[64 * 1024];
        try
        {
            while (true)
            {
                file.Write(block);
            }
        }
        catch (IOException)
        {
            // Full: exactly what the test needs.
        }
    }

    private static void Run(string program, params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(program, args) { RedirectStandardError = true })!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', args)}: {error}");
    }

    private static string LastLine(string text) => text.TrimEnd('\n').Split('\n')[^1];
}
