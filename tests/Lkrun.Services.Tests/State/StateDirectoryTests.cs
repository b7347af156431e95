using System.Diagnostics;
using Lkrun.Services.State;
using Lkrun.Services.Tests.Infrastructure;

namespace Lkrun.Services.Tests.State;

public sealed class StateDirectoryTests : IDisposable
{
    private readonly string _parent = Directory.CreateTempSubdirectory("lkrun-state-").FullName;

    public void Dispose() => Directory.Delete(_parent, recursive: true);

    private string StatePath => Path.Combine(_parent, "vm-state");

    private string LockPath => Path.Combine(StatePath, StateLayout.LockName);

    [Fact]
    public void A_new_state_dir_is_private_and_records_the_holder()
    {
        using var state = StateDirectory.Acquire(StatePath);
        Assert.True(state.CreatedNow);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(StatePath));
        Assert.Equal($"{Environment.ProcessId}", File.ReadAllText(state.Layout.LkrunPid).Trim());
    }

    [Fact]
    public void A_state_dir_in_use_is_refused_by_another_process()
    {
        using var state = StateDirectory.Acquire(StatePath);
        // flock is per open file, so a second process shows the real contention: flock(1) from util-linux.
        var other = Process.Start(new ProcessStartInfo("flock", ["--nonblock", state.Layout.Lock, "true"]))!;
        other.WaitForExit();
        Assert.NotEqual(0, other.ExitCode);
    }

    [Fact]
    public void A_second_acquire_reports_who_holds_it()
    {
        using var holder = new Process
        {
            StartInfo = new ProcessStartInfo("flock", [Path.Combine(StatePath, StateLayout.LockName), "sleep", "30"]),
        };
        Directory.CreateDirectory(StatePath);
        File.WriteAllText(Path.Combine(StatePath, StateLayout.LkrunPidName), "4242\n");
        holder.Start();
        try
        {
            FileLocks.WaitUntil(() => !FileLocks.IsFree(LockPath) || holder.HasExited, "the other process to take the lock");
            Assert.False(holder.HasExited, $"flock exited with {(holder.HasExited ? holder.ExitCode : 0)}");
            var error = Assert.Throws<StateDirectoryException>(() => StateDirectory.Acquire(StatePath));
            Assert.Contains("in use by another lkrun (pid 4242)", error.Message);
            Assert.True(Directory.Exists(StatePath));
        }
        finally
        {
            holder.Kill();
            holder.WaitForExit();
        }
    }

    [Fact]
    public void A_state_dir_left_by_a_dead_holder_is_reused()
    {
        Directory.CreateDirectory(StatePath);
        File.WriteAllText(Path.Combine(StatePath, StateLayout.LkrunPidName), "999999\n");
        File.WriteAllText(Path.Combine(StatePath, StateLayout.LockName), "");
        using var state = StateDirectory.Acquire(StatePath);
        Assert.False(state.CreatedNow);
    }

    [Fact]
    public void Rolling_back_a_new_state_dir_removes_it()
    {
        var state = StateDirectory.Acquire(StatePath);
        VmIdentity.LoadOrCreate(state);
        state.RollBack();
        state.Dispose();
        Assert.False(Directory.Exists(StatePath));
    }

    [Fact]
    public void Rolling_back_a_new_state_dir_also_removes_what_this_run_created_outside_it()
    {
        var disk = Path.Combine(Path.GetDirectoryName(StatePath)!, "outside.raw");
        var state = StateDirectory.Acquire(StatePath);
        File.WriteAllText(state.TrackCreated(disk), "");
        state.RollBack();
        state.Dispose();
        Assert.False(File.Exists(disk));
        Assert.False(Directory.Exists(StatePath));
    }

    [Fact]
    public void Rolling_back_an_existing_state_dir_removes_only_what_this_run_created()
    {
        Directory.CreateDirectory(StatePath);
        File.WriteAllText(Path.Combine(StatePath, "disk.raw"), "data");
        var state = StateDirectory.Acquire(StatePath);
        VmIdentity.LoadOrCreate(state);
        state.RollBack();
        state.Dispose();
        Assert.True(File.Exists(Path.Combine(StatePath, "disk.raw")));
        Assert.False(File.Exists(Path.Combine(StatePath, StateLayout.UuidName)));
    }

    [Fact]
    public void The_identity_is_stable_across_runs()
    {
        Guid first;
        using (var state = StateDirectory.Acquire(StatePath))
        {
            first = VmIdentity.LoadOrCreate(state);
        }
        using (var state = StateDirectory.Acquire(StatePath))
        {
            Assert.Equal(first, VmIdentity.LoadOrCreate(state));
        }
    }

    [Fact]
    public void A_path_too_long_for_sockets_is_refused_before_anything_is_created()
    {
        var tooLong = Path.Combine(_parent, new string('d', 100));
        var error = Assert.Throws<StateDirectoryException>(() => StateDirectory.Acquire(tooLong));
        Assert.Contains("too long", error.Message);
        Assert.False(Directory.Exists(tooLong));
    }

    [Fact]
    public void The_leftovers_of_a_killed_lkrun_are_removed_on_the_next_start_but_not_the_hosts_own_sockets()
    {
        Directory.CreateDirectory(StatePath);
        File.WriteAllText(Path.Combine(StatePath, StateLayout.LkrunPidName), "999999\n");
        string[] leftovers = [StateLayout.ControlSocketName, StateLayout.ConsoleSocketName, StateLayout.QmpSocketName, StateLayout.QemuPidName, StateLayout.GuestVsockSocketName(2374), StateLayout.VirtiofsSocketName(0)];
        foreach (var name in leftovers)
        {
            File.WriteAllText(Path.Combine(StatePath, name), "");
        }
        var hostListener = Path.Combine(StatePath, StateLayout.HostVsockSocketName(5000));
        File.WriteAllText(hostListener, "");
        File.WriteAllText(Path.Combine(StatePath, StateLayout.UuidName), Guid.NewGuid() + "\n");

        using var state = StateDirectory.Acquire(StatePath);
        Assert.Equal(999999, state.KilledHolder);
        Assert.All(leftovers, name => Assert.False(File.Exists(Path.Combine(StatePath, name)), name));
        Assert.True(File.Exists(hostListener));
        Assert.True(File.Exists(state.Layout.Uuid));
    }

    [Fact]
    public void A_clean_exit_leaves_nothing_to_clean_up()
    {
        using (StateDirectory.Acquire(StatePath))
        {
        }
        using var state = StateDirectory.Acquire(StatePath);
        Assert.Null(state.KilledHolder);
    }

    [Fact]
    public void The_status_follows_the_lock_not_the_pid()
    {
        Assert.False(StateDirectory.IsHeld(StatePath));
        VmStatus status;
        using (var state = StateDirectory.Acquire(StatePath))
        {
            // flock is per open file: another process sees the lock, as lkrun ps does.
            Assert.False(FileLocks.IsFree(state.Layout.Lock));
            status = VmStatus.Of(StatePath);
            Assert.Equal(VmState.Running, status.State);
            Assert.Equal(Environment.ProcessId, status.Pid);
            new LastRun(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow, 0, "the guest powered off", Crashed: false).Write(state.Layout);
        }
        status = VmStatus.Of(StatePath);
        Assert.Equal(VmState.Stopped, status.State);
        Assert.Equal("the guest powered off", status.LastRun?.Ending);

        // A killed lkrun leaves its pid file, and the kernel has dropped its lock: crashed, never running.
        File.WriteAllText(Path.Combine(StatePath, StateLayout.LkrunPidName), $"{Environment.ProcessId}\n");
        Assert.Equal(VmState.Crashed, VmStatus.Of(StatePath).State);
    }

    [Fact]
    public void A_vm_that_failed_is_shown_as_crashed()
    {
        using (var state = StateDirectory.Acquire(StatePath))
        {
            new LastRun(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow, 1, "QEMU exited with code 139", Crashed: true).Write(state.Layout);
        }
        Assert.Equal(VmState.Crashed, VmStatus.Of(StatePath).State);
    }

    [Fact]
    public void A_state_dir_is_deleted_only_while_no_lkrun_holds_it()
    {
        using (var state = StateDirectory.Acquire(StatePath))
        {
            using var holder = Process.Start(new ProcessStartInfo("flock", ["--nonblock", state.Layout.Lock, "true"]))!;
            holder.WaitForExit();
        }
        using var other = new Process { StartInfo = new ProcessStartInfo("flock", [LockPath, "sleep", "30"]) };
        other.Start();
        try
        {
            FileLocks.WaitUntil(() => !FileLocks.IsFree(LockPath), "the other process to take the lock");
            Assert.False(StateDirectory.TryDelete(StatePath));
            Assert.True(Directory.Exists(StatePath));
        }
        finally
        {
            // The lock is flock(1)'s and its sleep's, which inherits it.
            other.Kill(entireProcessTree: true);
            other.WaitForExit();
        }
        Assert.True(StateDirectory.TryDelete(StatePath));
        Assert.False(Directory.Exists(StatePath));
    }
}
