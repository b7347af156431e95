namespace Lkrun.Spec.LinuxKit;

/// <summary>
/// Finds the files of a LinuxKit build output from its prefix: <c>prefix-kernel</c>, <c>prefix-initrd.img</c>,
/// <c>prefix-squashfs.img</c>, <c>prefix-cmdline</c> and <c>prefix.iso</c>.
/// </summary>
public static class LinuxKitImage
{
    public const string KernelSuffix = "-kernel";
    public const string InitrdSuffix = "-initrd.img";
    public const string SquashfsSuffix = "-squashfs.img";
    public const string CmdlineSuffix = "-cmdline";
    public const string IsoSuffix = ".iso";

    /// <summary>The image name for messages and the default state dir: the prefix without a trailing <c>.iso</c>.</summary>
    public static string NameOf(string prefix) =>
        prefix.EndsWith(IsoSuffix, StringComparison.Ordinal) ? prefix[..^IsoSuffix.Length] : prefix;

    public static BootSource Locate(string prefix, BootRequest request)
    {
        var forced = new List<string>();
        if (request.ForceKernel) forced.Add("-kernel");
        if (request.Squashfs) forced.Add("-squashfs");
        if (request.Iso) forced.Add("-iso");
        if (forced.Count > 1)
        {
            throw SpecException.Usage($"{string.Join(" and ", forced)} ask for different boot methods; choose one");
        }
        if (request.Uefi && (request.ForceKernel || request.Squashfs))
        {
            throw SpecException.Usage($"-uefi boots an ISO and cannot be combined with {forced[0]}");
        }

        var name = NameOf(prefix);
        if (request.Iso || request.Uefi || (!request.ForceKernel && !request.Squashfs && IsIsoPrefix(prefix)))
        {
            var iso = prefix.EndsWith(IsoSuffix, StringComparison.Ordinal) ? prefix : prefix + IsoSuffix;
            RequireFiles("ISO boot", iso);
            return new IsoBoot(Path.GetFullPath(iso), request.Uefi, request.Firmware is null ? null : Path.GetFullPath(request.Firmware));
        }

        var kernel = name + KernelSuffix;
        var cmdline = name + CmdlineSuffix;
        var squashfs = name + SquashfsSuffix;
        var initrd = name + InitrdSuffix;
        if (request.Squashfs || (!request.ForceKernel && !File.Exists(initrd) && File.Exists(squashfs)))
        {
            RequireFiles("kernel+squashfs boot", kernel, squashfs, cmdline);
            return new KernelSquashfsBoot(Path.GetFullPath(kernel), Path.GetFullPath(squashfs), ReadCmdline(cmdline));
        }

        RequireFiles("kernel+initrd boot", kernel, initrd, cmdline);
        return new KernelInitrdBoot(Path.GetFullPath(kernel), Path.GetFullPath(initrd), ReadCmdline(cmdline));
    }

    private static bool IsIsoPrefix(string prefix) =>
        prefix.EndsWith(IsoSuffix, StringComparison.Ordinal) && File.Exists(prefix);

    private static void RequireFiles(string method, params string[] paths)
    {
        var missing = paths.Where(p => !File.Exists(p)).ToList();
        if (missing.Count > 0)
        {
            var needs = string.Join(", ", paths.Select(Path.GetFileName));
            throw SpecException.MissingFile($"missing {string.Join(", ", missing)} ({method} needs {needs})");
        }
    }

    private static string ReadCmdline(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw SpecException.MissingFile($"cannot read {path}: {e.Message}");
        }
    }
}
