using System.CommandLine;
using Lkrun.Spec;

namespace Lkrun.Cli;

/// <summary>
/// <c>lkrun run [backend] [options] prefix</c>. Every flag is accepted with one dash, as linuxkit spells it, and with
/// two, as most other tools do.
/// </summary>
public sealed class RunCommand
{
    private readonly Option<string?> _cpus = Flag<string?>("cpus", "Number of CPUs", "N");
    private readonly Option<string?> _mem = Flag<string?>("mem", "Amount of memory in MiB (default 1024)", "MiB");
    private readonly Option<string?> _state = Flag<string?>("state", "Path to directory to keep VM state in (default <prefix>-state)", "DIR");
    private readonly Option<bool> _kernel = Flag<bool>("kernel", "Boot image is kernel+initrd+cmdline 'prefix'-kernel/-initrd.img/-cmdline");
    private readonly Option<bool> _consoleFile = Flag<bool>("console-file", "Write the console to <state>/console.log instead of the terminal");
    private readonly Option<string?> _accel = Flag<string?>("accel", "QEMU accelerator (default kvm when /dev/kvm is usable, else tcg)", "ACCEL");
    private readonly Option<string?> _qemu = Flag<string?>("qemu", "Path to the qemu-system binary (default from PATH)", "PATH");
    private readonly Option<string?> _machine = Flag<string?>("machine", "QEMU machine: q35, microvm (kernel boots) or auto (microvm when the kernel can use it)", "TYPE");
    private readonly Option<string?> _kernelEntry = Flag<string?>("kernel-entry", "How QEMU enters the kernel: pvh (decompressed ELF), bzimage, or auto (pvh when possible)", "ENTRY");
    private readonly Option<string[]> _disk = Flag<string[]>("disk", "Disk [file=]path[,size=N[M|G]][,format=raw|qcow2]; repeatable", "DISK");
    private readonly Option<string?> _data = Flag<string?>("data", "String of metadata to pass to the VM; error to give both -data and -data-file", "STRING");
    private readonly Option<string?> _dataFile = Flag<string?>("data-file", "Path to a file of metadata to pass to the VM", "PATH");
    private readonly Option<bool> _squashfs = Flag<bool>("squashfs", "Boot image is kernel+squashfs+cmdline");
    private readonly Option<bool> _iso = Flag<bool>("iso", "Boot image is an ISO");
    private readonly Option<bool> _uefi = Flag<bool>("uefi", "Boot the ISO through EFI firmware");
    private readonly Option<string?> _firmware = Flag<string?>("fw", "Path to the EFI firmware (default: OVMF where the system installs it)", "PATH");
    private readonly Option<string?> _networking = Flag<string?>("networking", "Networking mode: default (also vmnet), none, vpnkit (a shared network started for this VM), vpnkit,ETH[,PORT] (attach to a running one by its sockets), docker-for-mac, or vznat (Apple's NAT, virtualization.framework only)", "MODE");
    private readonly Option<string[]> _publish = Flag<string[]>("publish", "Publish a guest port on the host: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]; repeatable", "PORTS");
    private readonly Option<string?> _ip = Flag<string?>("ip", "Fixed guest IP address on 192.168.65.0/24", "A.B.C.D");
    private readonly Option<string[]> _vsockPorts = Flag<string[]>("vsock-ports", "Guest vsock ports to expose as unix sockets <state>/guest.XXXXXXXX: P1,P2,...", "PORTS");
    private readonly Option<string[]> _virtiofs = Flag<string[]>("virtiofs", "Share a host directory with the guest over virtio-fs: PATH[,tag=TAG][,ro] (tags virtiofs0, virtiofs1, ... by default); repeatable", "SHARE");
    private readonly Option<string?> _stopTimeout = Flag<string?>("stop-timeout", "Seconds the guest has to power off after SIGTERM before it is stopped hard (default 30)", "SECONDS");
    private readonly Option<bool> _detach = Flag<bool>("detach", "Run the VM in the background: the console goes to <state>/console.log and to lkrun console; lkrun returns once it runs", alias: "-d");
    private readonly Option<string?> _name = Flag<string?>("name", "Name of the VM for lkrun ps, stop, console, logs and rm (default: the image name, made unique)", "NAME");

    public RunCommand(Func<RunOptions, CancellationToken, Task<int>> run)
    {
        Command = new Command("run", "Run a LinuxKit image as a local VM. Flags take one dash or two (-mem 512, --mem=512).");
        foreach (var option in AllOptions())
        {
            option.Recursive = true;
            Command.Options.Add(option);
        }
        Attach(Command, DefaultEngine, run);

        var qemu = new Command(BackendName(EngineKind.Qemu), "Run the image on QEMU (the default on Linux)");
        Attach(qemu, EngineKind.Qemu, run);
        Command.Subcommands.Add(qemu);

        var vz = new Command(BackendName(EngineKind.VirtualizationFramework), "Run the image on macOS Virtualization.framework (the default on macOS)");
        vz.Aliases.Add("virtualization");
        vz.Aliases.Add("vz");
        Attach(vz, EngineKind.VirtualizationFramework, run);
        Command.Subcommands.Add(vz);
    }

    public Command Command { get; }

    /// <summary>The backend's name as <c>lkrun run</c> takes it, and as <c>ps</c> and the control API show it.</summary>
    public static string BackendName(EngineKind engine) => engine == EngineKind.Qemu ? "qemu" : "virtualization.framework";

    public static EngineKind DefaultEngine => OperatingSystem.IsMacOS() ? EngineKind.VirtualizationFramework : EngineKind.Qemu;

    private void Attach(Command command, EngineKind engine, Func<RunOptions, CancellationToken, Task<int>> run)
    {
        var prefix = new Argument<string>("prefix") { Description = "Path prefix of the LinuxKit image (prefix-kernel, prefix-initrd.img, prefix.iso, ...)" };
        command.Arguments.Add(prefix);
        command.SetAction((result, cancellation) => run(Read(result, engine, prefix), cancellation));
    }

    private RunOptions Read(ParseResult result, EngineKind engine, Argument<string> prefix) => new()
    {
        Engine = engine,
        Prefix = result.GetValue(prefix)!,
        Cpus = result.GetValue(_cpus),
        Mem = result.GetValue(_mem),
        State = result.GetValue(_state),
        Kernel = result.GetValue(_kernel),
        ConsoleFile = result.GetValue(_consoleFile),
        Accel = result.GetValue(_accel),
        Qemu = result.GetValue(_qemu),
        Machine = result.GetValue(_machine),
        KernelEntry = result.GetValue(_kernelEntry),
        Disks = result.GetValue(_disk) ?? [],
        Data = result.GetValue(_data),
        DataFile = result.GetValue(_dataFile),
        Squashfs = result.GetValue(_squashfs),
        Iso = result.GetValue(_iso),
        Uefi = result.GetValue(_uefi),
        Firmware = result.GetValue(_firmware),
        Networking = result.GetValue(_networking),
        Publish = result.GetValue(_publish) ?? [],
        Ip = result.GetValue(_ip),
        VsockPorts = result.GetValue(_vsockPorts) ?? [],
        Virtiofs = result.GetValue(_virtiofs) ?? [],
        StopTimeout = result.GetValue(_stopTimeout),
        Detach = result.GetValue(_detach),
        Name = result.GetValue(_name),
    };

    private IEnumerable<Option> AllOptions() =>
    [
        _cpus, _mem, _state, _kernel, _consoleFile, _accel, _qemu, _machine, _kernelEntry, _disk, _data, _dataFile, _squashfs, _iso, _uefi,
        _firmware, _networking, _publish, _ip, _vsockPorts, _virtiofs, _stopTimeout, _detach, _name,
    ];

    private static Option<T> Flag<T>(string name, string description, string? valueName = null, string? alias = null)
    {
        var option = new Option<T>("--" + name, "-" + name) { Description = description };
        if (alias is not null)
        {
            option.Aliases.Add(alias);
        }
        if (valueName is not null)
        {
            option.HelpName = valueName;
        }
        return option;
    }
}
