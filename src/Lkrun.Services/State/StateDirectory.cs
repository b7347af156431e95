using System.Runtime.InteropServices;
using System.Text;
using Lkrun.Services.Interop;

namespace Lkrun.Services.State;

/// <summary>
/// A VM's state dir: created with mode 0700, held by one lkrun at a time through an flock on <c>lkrun.lock</c>
/// (the kernel drops it when lkrun dies, so a dir left behind by a crash is simply reused).
/// </summary>
public sealed class StateDirectory : IDisposable
{
    /// <summary>Unix socket paths are limited to 107 bytes on Linux (103 on macOS), the terminating zero aside.</summary>
    public static int MaxSocketPathBytes => OperatingSystem.IsMacOS() ? 103 : LibC.SunPathLength - 1;

    private readonly SafeHandle _lock;
    private readonly List<string> _createdFiles = [];

    private StateDirectory(string path, bool createdNow, SafeHandle lockFile)
    {
        Layout = new StateLayout(path);
        CreatedNow = createdNow;
        _lock = lockFile;
    }

    public string Path => Layout.Directory;

    /// <summary>The names of the files this dir holds.</summary>
    public StateLayout Layout { get; }

    /// <summary>True when this run created the directory, so a failure before boot removes it again.</summary>
    public bool CreatedNow { get; }

    /// <summary>Fails, creating nothing, when <paramref name="path"/> is too long to hold lkrun's sockets.</summary>
    public static void CheckSocketPathLength(string path)
    {
        var longest = Encoding.UTF8.GetByteCount(path) + 1 + StateLayout.LongestSocketName;
        if (longest > MaxSocketPathBytes)
        {
            throw new StateDirectoryException(
                $"state dir {path} is too long to hold unix sockets ({longest} bytes with a socket name, at most {MaxSocketPathBytes}); use a shorter -state");
        }
    }

    public static StateDirectory Acquire(string path)
    {
        CheckSocketPathLength(path);
        var createdNow = !Directory.Exists(path);
        // Checked first so that a read-only mount or a directory of someone else's is one clear line.
        var where = createdNow ? System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) : path;
        if (where is not null && Directory.Exists(where) && LibC.WhyNotReadWrite(where) is { } why)
        {
            throw new StateDirectoryException(createdNow
                ? $"state dir {path}: cannot create it in {where} ({why})"
                : $"state dir {path}: cannot write in it ({why})");
        }
        if (createdNow)
        {
            Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        SafeHandle? lockFile = null;
        try
        {
            var layout = new StateLayout(path);
            lockFile = PosixFileLock.Open(layout.Lock);
            if (!TryLock(lockFile))
            {
                var holder = ReadPid(layout.LkrunPid);
                throw new StateDirectoryException(
                    $"state dir {path} is in use by another lkrun{(holder is null ? "" : $" (pid {holder})")}; stop it or use a different -state");
            }
            // lkrun removes its pid file as it exits: one still there belonged to an lkrun that was killed.
            var killedHolder = ReadPid(layout.LkrunPid);
            if (killedHolder is not null)
            {
                RemoveLeftovers(layout);
            }
            File.Delete(layout.LastRun);
            File.WriteAllText(layout.LkrunPid, $"{Environment.ProcessId}\n");
            return new StateDirectory(path, createdNow, lockFile) { KilledHolder = killedHolder };
        }
        catch
        {
            lockFile?.Dispose();
            if (createdNow)
            {
                Directory.Delete(path, recursive: true);
            }
            throw;
        }
    }

    /// <summary>The pid of an earlier lkrun that was killed while it held this dir, whose leftovers were removed.</summary>
    public int? KilledHolder { get; private init; }

    /// <summary>True while an lkrun holds the state dir at <paramref name="path"/>, which is exactly while its VM runs or starts.</summary>
    public static bool IsHeld(string path) => PosixFileLock.IsHeld(new StateLayout(path).Lock);

    /// <summary>The pid of the lkrun that holds or last held the state dir, from its pid file.</summary>
    public static int? HolderPid(string path) => ReadPid(new StateLayout(path).LkrunPid);

    /// <summary>
    /// Deletes the state dir at <paramref name="path"/> with everything in it, holding its lock meanwhile so that no
    /// lkrun starts in it; false, deleting nothing, when an lkrun holds it.
    /// </summary>
    public static bool TryDelete(string path)
    {
        var layout = new StateLayout(path);
        using var lockFile = PosixFileLock.Open(layout.Lock);
        if (!TryLock(lockFile))
        {
            return false;
        }
        System.IO.Directory.Delete(path, recursive: true);
        return true;
    }

    /// <summary>Records a file this run created, to be removed when the run fails before the VM starts.</summary>
    public string TrackCreated(string path)
    {
        _createdFiles.Add(path);
        return path;
    }

    /// <summary>
    /// Undoes this run: removes the files it created (disks may live outside the dir), then the dir itself if
    /// this run created it.
    /// </summary>
    public void RollBack()
    {
        foreach (var file in _createdFiles)
        {
            File.Delete(file);
        }
        if (CreatedNow)
        {
            _lock.Dispose();
            Directory.Delete(Path, recursive: true);
        }
    }

    public void Dispose()
    {
        if (Directory.Exists(Path))
        {
            File.Delete(Layout.LkrunPid);
        }
        _lock.Dispose();
    }

    /// <summary>
    /// Takes the lock, looking again for a moment when it is busy: <c>lkrun ps</c> and <c>lkrun stop</c> probe it
    /// with an instant's shared lock, and a probe must not make a start fail.
    /// </summary>
    private static bool TryLock(SafeHandle lockFile)
    {
        for (var attempt = 0; attempt < 10; attempt++)
        {
            if (PosixFileLock.TryLockExclusive(lockFile))
            {
                return true;
            }
            Thread.Sleep(ProbeRetryInterval);
        }
        return false;
    }

    private static readonly TimeSpan ProbeRetryInterval = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// Removes what a killed lkrun left of its run: its sockets and pid files. The <c>00000002.*</c> sockets are
    /// not lkrun's (programs on the host listen there) and stay.
    /// </summary>
    private static void RemoveLeftovers(StateLayout layout)
    {
        string[] runFiles =
        [
            StateLayout.QmpSocketName, StateLayout.SerialConsoleSocketName, StateLayout.VirtioConsoleSocketName,
            StateLayout.VsockDeviceSocketName, StateLayout.NetworkSocketName, StateLayout.NetworkDeviceSocketName, StateLayout.ControlSocketName,
            StateLayout.ConsoleSocketName, StateLayout.QemuPidName,
        ];
        foreach (var name in runFiles)
        {
            File.Delete(System.IO.Path.Combine(layout.Directory, name));
        }
        foreach (var pattern in new[] { StateLayout.GuestVsockSocketPattern, StateLayout.VirtiofsSocketPattern })
        {
            foreach (var socket in System.IO.Directory.EnumerateFiles(layout.Directory, pattern))
            {
                File.Delete(socket);
            }
        }
    }

    private static int? ReadPid(string pidFile)
    {
        try
        {
            return int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid) ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

public sealed class StateDirectoryException(string message) : Exception(message);
