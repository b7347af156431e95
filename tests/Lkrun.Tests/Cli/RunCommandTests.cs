using System.CommandLine;
using Lkrun.Cli;
using Lkrun.Spec;

namespace Lkrun.Tests.Cli;

public sealed class RunCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-cli-").FullName;

    public RunCommandTests()
    {
        foreach (var suffix in new[] { "-kernel", "-initrd.img", "-cmdline" })
        {
            File.WriteAllText(Path.Combine(_dir, "img" + suffix), "console=ttyS0");
        }
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Prefix => Path.Combine(_dir, "img");

    private static RunOptions Parse(params string[] args)
    {
        RunOptions? captured = null;
        var root = new RootCommand();
        root.Subcommands.Add(new RunCommand((options, _) =>
        {
            captured = options;
            return Task.FromResult(0);
        }).Command);
        var result = root.Parse(args);
        Assert.Empty(result.Errors);
        Assert.Equal(0, result.Invoke());
        return captured!;
    }

    [Theory]
    [InlineData("-mem", "512")]
    [InlineData("--mem", "512")]
    public void Flags_take_one_or_two_dashes(string flag, string value)
    {
        Assert.Equal("512", Parse("run", flag, value, Prefix).Mem);
    }

    [Theory]
    [InlineData("--mem=512")]
    [InlineData("-mem=512")]
    public void Flags_take_an_equals_sign(string flag)
    {
        Assert.Equal("512", Parse("run", flag, Prefix).Mem);
    }

    [Theory]
    [InlineData("-d")]
    [InlineData("-detach")]
    [InlineData("--detach")]
    public void Detach_is_spelled_as_the_other_flags_are_and_short(string flag)
    {
        var options = Parse("run", flag, "--name", "web", "-disk", "size=1G", Prefix);
        Assert.True(options.Detach);
        Assert.Equal("web", options.Name);
        Assert.Equal(["size=1G"], options.Disks);
    }

    [Fact]
    public void Repeatable_flags_collect_every_value_in_order()
    {
        var options = Parse("run", "-disk", "a.img", "--disk", "size=1G", "-publish", "2222:22", "-publish=8080:80/udp", "-vsock-ports", "1,2", "-vsock-ports", "3", Prefix);
        Assert.Equal(["a.img", "size=1G"], options.Disks);
        Assert.Equal(["2222:22", "8080:80/udp"], options.Publish);
        Assert.Equal(["1,2", "3"], options.VsockPorts);
        Assert.Equal(Prefix, options.Prefix);
    }

    [Theory]
    [InlineData("qemu", EngineKind.Qemu)]
    [InlineData("virtualization.framework", EngineKind.VirtualizationFramework)]
    [InlineData("virtualization", EngineKind.VirtualizationFramework)]
    [InlineData("vz", EngineKind.VirtualizationFramework)]
    public void Backends_are_subcommands_that_take_the_same_flags(string backend, EngineKind expected)
    {
        var options = Parse("run", backend, "-cpus", "2", Prefix, "-kernel");
        Assert.Equal(expected, options.Engine);
        Assert.Equal("2", options.Cpus);
        Assert.True(options.Kernel);
    }

    [Fact]
    public void Without_a_backend_the_platform_default_is_used()
    {
        Assert.Equal(OperatingSystem.IsMacOS() ? EngineKind.VirtualizationFramework : EngineKind.Qemu, Parse("run", Prefix).Engine);
    }

    [Fact]
    public void Flags_map_to_the_spec()
    {
        var spec = SpecMapper.ToSpec(Parse(
            "run", "-cpus", "2", "-mem", "768", "-state", Path.Combine(_dir, "st"), "-disk", "size=1G", "-data", "hi",
            "-publish", "2222:22", "-ip", "192.168.65.7", "-vsock-ports", "2374,5000", "-console-file",
            "--stop-timeout", "45s", "-accel", "tcg", "-qemu", "/opt/qemu", "-machine", "microvm", "--kernel-entry=pvh", Prefix));
        Assert.Equal(2, spec.Cpus);
        Assert.Equal(768, spec.MemoryMiB);
        Assert.Equal(Path.Combine(_dir, "st"), spec.StateDirectory);
        Assert.Equal(new DiskSpec(Path.Combine(_dir, "st", "disk.raw"), 1024, DiskFormat.Raw), Assert.Single(spec.Disks));
        Assert.Equal(new InlineMetadata("hi"), spec.Metadata);
        Assert.Equal("192.168.65.7", spec.Network.FixedAddress?.ToString());
        Assert.Equal(22, Assert.Single(spec.Network.PublishedPorts).GuestPort);
        Assert.Equal([2374u, 5000u], spec.VsockPorts);
        Assert.Equal(ConsoleMode.File, spec.Console.Mode);
        Assert.Equal(TimeSpan.FromSeconds(45), spec.StopTimeout);
        Assert.Equal(new QemuEngineSpec("/opt/qemu", "tcg", QemuMachineType.Microvm, KernelEntry.Pvh), spec.Engine);
        Assert.Equal("img", spec.Name);
    }

    [Fact]
    public void Defaults_follow_linuxkit()
    {
        var spec = SpecMapper.ToSpec(Parse("run", Prefix));
        Assert.Equal(1, spec.Cpus);
        Assert.Equal(1024, spec.MemoryMiB);
        Assert.Equal(Prefix + "-state", spec.StateDirectory);
        Assert.Equal(NetworkMode.Vmnet, spec.Network.Mode);
        Assert.Equal(TimeSpan.FromSeconds(30), spec.StopTimeout);
        Assert.Equal(ConsoleMode.Terminal, spec.Console.Mode);
        Assert.Equal(new QemuEngineSpec(null, null, QemuMachineType.Auto, KernelEntry.Auto), spec.Engine);
    }

    [Theory]
    [InlineData("q35", QemuMachineType.Q35)]
    [InlineData("microvm", QemuMachineType.Microvm)]
    [InlineData("auto", QemuMachineType.Auto)]
    public void Machine_names_map_to_the_spec(string name, QemuMachineType expected)
    {
        Assert.Equal(expected, ((QemuEngineSpec)SpecMapper.ToSpec(Parse("run", "-machine", name, Prefix)).Engine).Machine);
    }

    [Theory]
    [InlineData("pvh", KernelEntry.Pvh)]
    [InlineData("bzimage", KernelEntry.BzImage)]
    [InlineData("auto", KernelEntry.Auto)]
    public void Kernel_entries_map_to_the_spec(string name, KernelEntry expected)
    {
        Assert.Equal(expected, ((QemuEngineSpec)SpecMapper.ToSpec(Parse("run", "-kernel-entry", name, Prefix)).Engine).KernelEntry);
    }

    [Fact]
    public void Spec_from_flags_round_trips_through_json()
    {
        var spec = SpecMapper.ToSpec(Parse(
            "run", "-disk", "size=2G", "-data", "x", "-publish", "1:2/udp", "-vsock-ports", "7", "-ip", "192.168.65.20",
            "-machine", "q35", "-kernel-entry", "bzimage", Prefix));
        Assert.Equal(spec, VmSpecJson.Deserialize(VmSpecJson.Serialize(spec)));
    }

    [Fact]
    public void Virtiofs_shares_map_to_the_spec_in_order_with_default_tags()
    {
        var spec = SpecMapper.ToSpec(Parse("run", "vz", "-virtiofs", _dir, "--virtiofs", $"{_dir},tag=logs,ro", "-virtiofs", _dir + ",ro", "-networking", "vznat", Prefix));
        Assert.Equal(
            [new SharedDirectorySpec(_dir, "virtiofs0", false), new SharedDirectorySpec(_dir, "logs", true), new SharedDirectorySpec(_dir, "virtiofs2", true)],
            spec.SharedDirectories);
        Assert.Equal(NetworkMode.VzNat, spec.Network.Mode);
        Assert.Equal(spec, VmSpecJson.Deserialize(VmSpecJson.Serialize(spec)));
    }

    [Fact]
    public void A_virtiofs_share_that_is_not_a_directory_is_refused_naming_it()
    {
        var error = Assert.Throws<SpecException>(() => SpecMapper.ToSpec(Parse("run", "-virtiofs", Prefix + "-kernel", Prefix)));
        Assert.Equal($"-virtiofs {Prefix}-kernel: not a directory", error.Message);
        Assert.Equal(1, error.ExitCode);
    }

    [Theory]
    [InlineData("-mem", "lots", "-mem lots: not a whole number")]
    [InlineData("-cpus", "0", "-cpus 0: must be from 1")]
    [InlineData("-networking", "bridge", "-networking bridge: unknown mode")]
    [InlineData("--stop-timeout", "-3", "-stop-timeout -3")]
    [InlineData("-machine", "pc", "-machine pc: unknown machine (q35, microvm or auto)")]
    [InlineData("-kernel-entry", "elf", "-kernel-entry elf: unknown entry (auto, pvh or bzimage)")]
    // Found by fuzzing (fuzz/corpus/cli): an empty path once escaped from Path.GetFullPath as ArgumentException.
    [InlineData("-state", "", "-state: needs a path")]
    [InlineData("-data-file", "", "-data-file: needs a path")]
    [InlineData("-fw", "", "-fw: needs a path")]
    public void Bad_values_are_usage_errors(string flag, string value, string expected)
    {
        var error = Assert.Throws<SpecException>(() => SpecMapper.ToSpec(Parse("run", flag, value, Prefix)));
        Assert.StartsWith(expected, error.Message);
        Assert.Equal(2, error.ExitCode);
    }

    [Theory]
    [InlineData("-accel")]
    [InlineData("-qemu")]
    [InlineData("-machine")]
    [InlineData("-kernel-entry")]
    public void Qemu_flags_are_refused_on_virtualization_framework(string flag)
    {
        var error = Assert.Throws<SpecException>(() => SpecMapper.ToSpec(Parse("run", "vz", flag, "x", Prefix)));
        Assert.Contains("qemu backend only", error.Message);
    }
}
