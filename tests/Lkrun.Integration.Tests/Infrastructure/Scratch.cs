namespace Lkrun.Integration.Tests.Infrastructure;

/// <summary>A temporary directory for one test: state dirs, image variants, sockets. Short, for socket paths.</summary>
public sealed class Scratch : IDisposable
{
    public Scratch() => Path = Directory.CreateTempSubdirectory("lkit-").FullName;

    public string Path { get; }

    public string this[string name] => System.IO.Path.Combine(Path, name);

    /// <summary>
    /// A LinuxKit image that shares the kernel and initrd of <paramref name="prefix"/> (symlinked) with its own
    /// cmdline: how a test switches the guest's behaviour.
    /// </summary>
    public string ImageWithCmdline(string prefix, string cmdline, string name = "img")
    {
        var variant = this[name];
        foreach (var suffix in new[] { "-kernel", "-initrd.img", "-squashfs.img" })
        {
            if (File.Exists(prefix + suffix))
            {
                File.CreateSymbolicLink(variant + suffix, prefix + suffix);
            }
        }
        File.WriteAllText(variant + "-cmdline", cmdline);
        return variant;
    }

    /// <summary>The cmdline of <paramref name="prefix"/> with <paramref name="extra"/> appended.</summary>
    public string ImageWithExtraCmdline(string prefix, string extra, string name = "img") =>
        ImageWithCmdline(prefix, File.ReadAllText(prefix + "-cmdline").Trim() + " " + extra, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A VM that outlived its test may still hold a file; the next boot's temp dir is a fresh one.
        }
    }
}
