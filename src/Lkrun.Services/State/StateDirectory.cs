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
            if (!PosixFileLock.TryLockExclusive(lockFile))
            {
                var holder = ReadPid(layout.LkrunPid);
                throw new StateDirectoryException(
                    $"state dir {path} is in use by another lkrun{(holder is null ? "" : $" (pid {holder})")}; stop it or use a different -state");
            }
            File.WriteAllText(layout.LkrunPid, $"{Environment.ProcessId}\n");
            return new StateDirectory(path, createdNow, lockFile);
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

    private static int? ReadPid(string pidFile)
    {
        try
        {
            return int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}

public sealed class StateDirectoryException(string message) : Exception(message);
