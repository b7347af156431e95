using System.Globalization;
using Lkrun.Services.State;
using Lkrun.Spec;
using Lkrun.Spec.LinuxKit;

namespace Lkrun.Cli;

/// <summary>Turns the flags of <c>lkrun run</c> into a validated <see cref="VmSpec"/>. Creates nothing.</summary>
public static class SpecMapper
{
    public static VmSpec ToSpec(RunOptions options)
    {
        if (options.Engine == EngineKind.VirtualizationFramework)
        {
            if (options.Accel is not null) throw SpecException.Usage("-accel applies to the qemu backend only");
            if (options.Qemu is not null) throw SpecException.Usage("-qemu applies to the qemu backend only");
            if (options.Machine is not null) throw SpecException.Usage("-machine applies to the qemu backend only");
            if (options.KernelEntry is not null) throw SpecException.Usage("-kernel-entry applies to the qemu backend only");
        }

        foreach (var (flag, path) in new[] { ("-state", options.State), ("-data-file", options.DataFile), ("-fw", options.Firmware) })
        {
            if (path is "") throw SpecException.Usage($"{flag}: needs a path, not an empty string");
        }

        var name = LinuxKitImage.NameOf(options.Prefix);
        var state = Path.GetFullPath(options.State ?? name + "-state");
        var boot = LinuxKitImage.Locate(
            options.Prefix,
            new BootRequest(options.Kernel, options.Squashfs, options.Iso, options.Uefi, options.Firmware));

        var spec = new VmSpec
        {
            Name = Path.GetFileName(name),
            Boot = boot,
            Cpus = ParseCount("-cpus", options.Cpus, Defaults.Cpus),
            MemoryMiB = ParseCount("-mem", options.Mem, Defaults.MemoryMiB),
            Disks = new(options.Disks.Select((value, index) => FlagSyntax.ParseDisk(value, new StateLayout(state).Disk(index)))),
            Metadata = MetadataSpec.FromFlags(options.Data, options.DataFile),
            Network = FlagSyntax.ParseNetworking(options.Networking) with
            {
                FixedAddress = options.Ip is null ? null : FlagSyntax.ParseIPv4(options.Ip),
                PublishedPorts = new(options.Publish.Select(FlagSyntax.ParsePublish)),
            },
            VsockPorts = new(options.VsockPorts.SelectMany(FlagSyntax.ParseVsockPorts)),
            SharedDirectories = new(options.Virtiofs.Select(FlagSyntax.ParseVirtiofs)),
            Console = options.ConsoleFile ? ConsoleSpec.File : ConsoleSpec.Terminal,
            StateDirectory = state,
            StopTimeout = ParseStopTimeout(options.StopTimeout),
            Engine = options.Engine switch
            {
                EngineKind.Qemu => new QemuEngineSpec(
                    options.Qemu, options.Accel, FlagSyntax.ParseMachine(options.Machine), FlagSyntax.ParseKernelEntry(options.KernelEntry)),
                _ => new VirtualizationFrameworkEngineSpec(),
            },
        };
        VmSpecValidator.Validate(spec);
        return spec;
    }

    private static int ParseCount(string flag, string? text, int fallback)
    {
        if (text is null) return fallback;
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value))
        {
            throw SpecException.Usage($"{flag} {text}: not a whole number");
        }
        return value;
    }

    /// <summary>Seconds, optionally as a Go-style duration such as <c>45s</c> or <c>2m</c>.</summary>
    private static TimeSpan ParseStopTimeout(string? text)
    {
        if (text is null) return Defaults.StopTimeout;
        var (digits, unit) = text.EndsWith('m') ? (text[..^1], 60.0) : (text.TrimEnd('s'), 1.0);
        if (!double.TryParse(digits, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) || value <= 0)
        {
            throw SpecException.Usage($"-stop-timeout {text}: not a positive number of seconds");
        }
        return TimeSpan.FromSeconds(value * unit);
    }
}
