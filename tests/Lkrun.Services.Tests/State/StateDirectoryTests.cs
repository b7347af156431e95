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
}
