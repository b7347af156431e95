using System.Net.Sockets;
using System.Text;
using Lkrun.Integration.Tests.Infrastructure;

namespace Lkrun.Integration.Tests.Run;

/// <summary>
/// The processes of a VM dying under it, one after the other on the same state dir and disk, as a user meets them:
/// QEMU killed, then lkrun killed, then a guest that ignores the power button. Each run checks what the one before
/// left behind (nothing held, the disk's data, the same address), so the three faults share their boots honestly.
/// </summary>
public sealed class ProcessFaultTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    private string State => _scratch["state"];

    private string Disk => _scratch["disk.raw"];

    [Fact]
    public async Task Qemu_killed_then_lkrun_killed_then_a_deaf_guest_each_leave_a_state_dir_the_next_run_reuses_with_its_data()
    {
        string address;
        await using (var first = Run(DiskScript(read: false, write: "first")))
        {
            await first.WaitForOutputAsync("lkrun-guest: user-data exit 0");
            address = (await first.WaitForErrorAsync("^lkrun: guest address (\\S+)$")).Groups[1].Value;
            Posix.Signal(await first.QemuPidAsync(), Posix.SIGKILL);
            Assert.Equal(1, await first.WaitForExitAsync());
            // One line for the fault, and it is the last.
            Assert.Matches("^lkrun: QEMU exited with code 137[^\n]*$", LastLine(first.Error));
        }
        AssertNothingHeld();
        Assert.True(File.Exists(Path.Combine(State, "vm.json")));
        Assert.Contains($"\"{address}\"", File.ReadAllText(_scratch["xdg-state/lkrun/leases.json"]));

        await using (var second = Run(DiskScript(read: true, write: "second")))
        {
            Assert.Equal(address, (await second.WaitForErrorAsync("^lkrun: guest address (\\S+)$")).Groups[1].Value);
            await second.WaitForOutputAsync("read back: first");
            await second.WaitForOutputAsync("lkrun-guest: user-data exit 0");
            var qemu = await second.QemuPidAsync();
            await second.SignalAsync(Posix.SIGKILL);
            await second.WaitForExitAsync();
            await LkrunProcess.WaitUntilAsync(() => !Posix.IsAlive(qemu), TimeSpan.FromSeconds(10), "QEMU to die with lkrun");
        }
        // A killed lkrun cannot remove its socket files, but nothing listens on them any more; the next run (below)
        // takes the state dir's lock and the VM's running lease again, which it could not while either was held.
        AssertNothingListening();

        // The guest ignores the power button: lkrun stops it hard after --stop-timeout; what it wrote before stays.
        var deaf = _scratch.ImageWithExtraCmdline(TestImages.Guest, "lkrun.ignore_power_button");
        await using (var third = Run(DiskScript(read: true, write: "third"), deaf, "--stop-timeout", "3"))
        {
            Assert.Equal(address, (await third.WaitForErrorAsync("^lkrun: guest address (\\S+)$")).Groups[1].Value);
            await third.WaitForOutputAsync("read back: second");
            await third.WaitForOutputAsync("lkrun-guest: user-data exit 0");
            await third.SignalAsync(Posix.SIGTERM);
            Assert.Equal(1, await third.WaitForExitAsync());
            Assert.Equal("lkrun: the guest did not power off within 3 s of the power button; stopped it", LastLine(third.Error));
        }
        AssertNothingHeld();
        Assert.Equal("third", Encoding.ASCII.GetString(File.ReadAllBytes(Disk).AsSpan(0, 5)));
    }

    private LkrunProcess Run(string userData, string? image = null, params string[] extra) =>
        LkrunProcess.Run(State, ["-mem", "256", "-disk", $"{Disk},size=8", "-data", userData, .. extra], image ?? TestImages.Guest);

    /// <summary>A user-data script that reads back the disk's first word and then writes <paramref name="write"/> there.</summary>
    private static string DiskScript(bool read, string write) =>
        "#!/bin/sh\n"
        + (read ? "echo \"read back: $(head -c 6 /dev/vda | tr -d '\\0')\"\n" : "")
        + $"printf '{write}\\0\\0\\0' | dd of=/dev/vda conv=fsync 2>/dev/null\n";

    /// <summary>No socket left in the state dir and its lock free: what a new run needs.</summary>
    private void AssertNothingHeld()
    {
        Assert.DoesNotContain(Directory.GetFiles(State), file => file.EndsWith(".sock", StringComparison.Ordinal) || Path.GetFileName(file).StartsWith("guest.", StringComparison.Ordinal));
        Assert.False(File.Exists(Path.Combine(State, "lkrun.pid")) && Posix.IsAlive(int.Parse(File.ReadAllText(Path.Combine(State, "lkrun.pid")).Trim())));
    }

    private void AssertNothingListening()
    {
        foreach (var socket in Directory.GetFiles(State).Where(file => file.EndsWith(".sock", StringComparison.Ordinal) || Path.GetFileName(file).StartsWith("guest.", StringComparison.Ordinal)))
        {
            // The network's socket is a datagram one: a stream connect to it fails for its type, not for its peer.
            Assert.True(Refuses(socket, SocketType.Stream) || Refuses(socket, SocketType.Dgram), $"{socket} still has a listener");
        }
    }

    private static bool Refuses(string path, SocketType type)
    {
        using var client = new Socket(AddressFamily.Unix, type, ProtocolType.Unspecified);
        var error = Record.Exception(() => client.Connect(new UnixDomainSocketEndPoint(path)));
        Assert.True(error is SocketException, $"{path} accepted a {type} connection");
        return ((SocketException)error).SocketErrorCode == SocketError.ConnectionRefused;
    }

    private static string LastLine(string text) => text.TrimEnd('\n').Split('\n')[^1];
}
