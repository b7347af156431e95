using System.Diagnostics;
using Lkrun.Services.Interop;
using Lkrun.Spec;

namespace Lkrun.Services.Disks;

/// <summary>
/// Makes the <c>-disk</c> files exist: a missing file is created at the requested size (raw files sparse, qcow2
/// through qemu-img); an existing file is used as it is, never truncated or grown.
/// </summary>
public static class DiskImages
{
    private const long MiB = 1024 * 1024;

    /// <summary>
    /// Checks, creating nothing, that each disk can be used: an existing one must be a regular file or a block device
    /// (a FIFO or character device would hang or mislead QEMU) that lkrun may read and write; a missing one must be
    /// creatable in its directory (not on a read-only mount, not in a directory lkrun may not write).
    /// </summary>
    public static void Check(IEnumerable<DiskSpec> disks)
    {
        foreach (var disk in disks)
        {
            var path = Path.GetFullPath(disk.Path);
            if (File.Exists(path))
            {
                if (OperatingSystem.IsLinux() && LibC.FileType(path) is not (LibC.S_IFREG or LibC.S_IFBLK))
                {
                    throw SpecException.Usage($"-disk {disk.Path}: not a regular file or a block device");
                }
                if (LibC.WhyNotReadWrite(path) is { } why)
                {
                    throw SpecException.MissingFile($"-disk {disk.Path}: cannot open it for reading and writing ({why})");
                }
            }
            else if (Path.GetDirectoryName(path) is { } directory && Directory.Exists(directory)
                && LibC.WhyNotReadWrite(directory) is { } why)
            {
                throw SpecException.MissingFile($"-disk {disk.Path}: cannot create it in {directory} ({why})");
            }
        }
    }

    /// <summary>
    /// Creates the missing disks of <paramref name="disks"/>; returns the paths it created so a failed start can
    /// remove them. <paramref name="warn"/> gets one line for an existing file whose size differs from the request.
    /// </summary>
    public static IReadOnlyList<string> CreateMissing(IEnumerable<DiskSpec> disks, Action<string> warn)
    {
        var created = new List<string>();
        try
        {
            foreach (var disk in disks)
            {
                if (File.Exists(disk.Path))
                {
                    WarnAboutSize(disk, warn);
                    continue;
                }
                var sizeMiB = disk.SizeMiB ?? throw new IOException($"-disk {disk.Path}: no such file, and no size=N to create it with");
                if (disk.Format == DiskFormat.Qcow2)
                {
                    CreateQcow2(disk.Path, sizeMiB);
                }
                else
                {
                    CreateSparseRaw(disk.Path, sizeMiB);
                }
                created.Add(disk.Path);
            }
        }
        catch
        {
            foreach (var path in created)
            {
                File.Delete(path);
            }
            throw;
        }
        return created;
    }

    private static void WarnAboutSize(DiskSpec disk, Action<string> warn)
    {
        if (disk.SizeMiB is not { } requested || disk.Format != DiskFormat.Raw)
        {
            return;
        }
        var actual = new FileInfo(disk.Path).Length;
        if (actual != requested * MiB)
        {
            warn($"-disk {disk.Path}: the file has {actual / (double)MiB:0.##} MiB, not the {requested} MiB asked for; it is used as it is");
        }
    }

    private static void CreateSparseRaw(string path, long sizeMiB)
    {
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        file.SetLength(sizeMiB * MiB);
    }

    private static void CreateQcow2(string path, long sizeMiB)
    {
        var startInfo = new ProcessStartInfo("qemu-img", ["create", "-q", "-f", "qcow2", path, $"{sizeMiB}M"])
        {
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        Process process;
        try
        {
            process = Process.Start(startInfo)!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new IOException($"-disk {path}: creating a qcow2 disk needs qemu-img (Debian/Ubuntu: apt-get install qemu-utils)");
        }
        using (process)
        {
            var error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                File.Delete(path);
                throw new IOException($"-disk {path}: qemu-img could not create it: {error.Trim()}");
            }
        }
    }
}
