using System.Globalization;
using System.Net;

namespace Lkrun.Spec;

/// <summary>Parsers for the values of linuxkit's structured flags. Each failure names the flag and the value.</summary>
public static class FlagSyntax
{
    /// <summary>
    /// <c>-disk [file=]path[,size=N][,format=raw|qcow2]</c>. A disk without a path is <paramref name="defaultPath"/>
    /// (in the state dir).
    /// </summary>
    public static DiskSpec ParseDisk(string value, string defaultPath)
    {
        string? path = null;
        long? sizeMiB = null;
        var format = DiskFormat.Raw;
        foreach (var part in value.Split(','))
        {
            var equals = part.IndexOf('=');
            var key = equals < 0 ? "file" : part[..equals];
            var item = equals < 0 ? part : part[(equals + 1)..];
            switch (key)
            {
                case "file" when item.Length > 0 && path is null:
                    path = item;
                    break;
                case "size":
                    sizeMiB = ParseSizeMiB(item) ?? throw SpecException.Usage(
                        $"-disk {value}: bad size '{item}' (use a number of MiB, or a number with an M or G suffix)");
                    break;
                case "format":
                    format = item switch
                    {
                        "raw" => DiskFormat.Raw,
                        "qcow2" => DiskFormat.Qcow2,
                        _ => throw SpecException.Usage($"-disk {value}: unknown format '{item}' (raw or qcow2)"),
                    };
                    break;
                default:
                    throw SpecException.Usage($"-disk {value}: cannot parse '{part}' (expected [file=]path[,size=N][,format=raw])");
            }
        }
        if (path is null && sizeMiB is null)
        {
            throw SpecException.Usage($"-disk {value}: give a file, a size, or both");
        }
        path ??= defaultPath;
        return new DiskSpec(Path.GetFullPath(path), sizeMiB, format);
    }

    /// <summary>A size in MiB: a plain number is MiB, and M or G suffixes are accepted.</summary>
    public static long? ParseSizeMiB(string text)
    {
        if (text.Length == 0) return null;
        long multiplier = 1;
        var digits = text;
        switch (char.ToUpperInvariant(text[^1]))
        {
            case 'M':
                digits = text[..^1];
                break;
            case 'G':
                digits = text[..^1];
                multiplier = 1024;
                break;
        }
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number <= 0)
        {
            return null;
        }
        return number <= long.MaxValue / (multiplier * 1024 * 1024) ? number * multiplier : null;
    }

    /// <summary>A port's text without its <c>/tcp</c> or <c>/udp</c> suffix, and that protocol (tcp when there is none).</summary>
    private static (string Ports, PortProtocol Protocol) SplitProtocol(string value, string flag)
    {
        var slash = value.LastIndexOf('/');
        if (slash < 0)
        {
            return (value, PortProtocol.Tcp);
        }
        var protocol = value[(slash + 1)..] switch
        {
            "tcp" => PortProtocol.Tcp,
            "udp" => PortProtocol.Udp,
            var other => throw SpecException.Usage($"{flag} {value}: unknown protocol '{other}' (tcp or udp)"),
        };
        return (value[..slash], protocol);
    }

    /// <summary><c>-publish [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]</c>; the host address defaults to 127.0.0.1.</summary>
    public static PublishedPort ParsePublish(string value) => ParsePublish(value, "-publish");

    /// <summary><see cref="ParsePublish(string)"/> for a value that <paramref name="flag"/> gives, which errors name.</summary>
    public static PublishedPort ParsePublish(string value, string flag)
    {
        var (ports, protocol) = SplitProtocol(value, flag);

        var hostAddress = IPAddress.Loopback;
        if (ports.StartsWith('['))
        {
            var close = ports.IndexOf("]:", StringComparison.Ordinal);
            if (close < 0 || !IPAddress.TryParse(ports[1..close], out hostAddress!))
            {
                throw SpecException.Usage($"{flag} {value}: bad host address (expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp])");
            }
            ports = ports[(close + 2)..];
        }
        var fields = ports.Split(':');
        if (fields.Length == 3)
        {
            // Without brackets the address has no colon, so it is IPv4; whether the network can publish from an
            // address is the network's check.
            if (!IPAddress.TryParse(fields[0], out hostAddress))
            {
                throw SpecException.Usage($"{flag} {value}: bad host address '{fields[0]}'");
            }
            fields = fields[1..];
        }
        if (fields.Length != 2)
        {
            throw SpecException.Usage($"{flag} {value}: expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]");
        }
        return new PublishedPort(hostAddress, ParsePort(fields[0], flag, value), ParsePort(fields[1], flag, value), protocol);
    }

    /// <summary>
    /// The host side of a published port, <c>[HOSTIP:]HOSTPORT[/tcp|/udp]</c>, as <paramref name="flag"/> gives it
    /// to take the port away again; the host address defaults to 127.0.0.1 and the protocol to tcp.
    /// </summary>
    public static (IPAddress HostAddress, int HostPort, PortProtocol Protocol) ParseHostPort(string value, string flag)
    {
        var (text, protocol) = SplitProtocol(value, flag);
        var colon = text.LastIndexOf(':');
        var hostAddress = IPAddress.Loopback;
        if (colon >= 0 && !IPAddress.TryParse(text[..colon].Trim('[', ']'), out hostAddress))
        {
            throw SpecException.Usage($"{flag} {value}: bad host address '{text[..colon]}' (expected [HOSTIP:]HOSTPORT[/tcp|/udp])");
        }
        return (hostAddress, ParsePort(text[(colon + 1)..], flag, value), protocol);
    }

    /// <summary><c>-vsock-ports P1,P2,...</c>: decimal guest ports from 1 to 65535.</summary>
    public static IEnumerable<uint> ParseVsockPorts(string value) =>
        value.Split(',').Select(item => (uint)ParsePort(item, "-vsock-ports", value));

    /// <summary>
    /// <c>-virtiofs PATH[,tag=TAG][,ro]</c>: a directory shared with the guest. Without a tag the share is named
    /// <c>virtiofs0</c>, <c>virtiofs1</c>, ... by its position among the <c>-virtiofs</c> flags, as linuxkit names them.
    /// </summary>
    public static SharedDirectorySpec ParseVirtiofs(string value, int index)
    {
        var parts = value.Split(',');
        if (parts[0].Length == 0 || parts[0].Contains('='))
        {
            throw SpecException.Usage($"-virtiofs {value}: expected PATH[,tag=TAG][,ro]");
        }
        string? tag = null;
        var readOnly = false;
        foreach (var part in parts.Skip(1))
        {
            switch (part)
            {
                case "ro" when !readOnly:
                    readOnly = true;
                    break;
                case var _ when part.StartsWith("tag=", StringComparison.Ordinal) && tag is null:
                    tag = part["tag=".Length..];
                    break;
                default:
                    throw SpecException.Usage($"-virtiofs {value}: cannot parse '{part}' (expected PATH[,tag=TAG][,ro])");
            }
        }
        return new SharedDirectorySpec(Path.GetFullPath(parts[0]), tag ?? SharedDirectorySpec.DefaultTag(index), readOnly);
    }

    /// <summary>
    /// <c>-networking MODE</c>: <c>default</c> (or <c>vmnet</c>, or none given), <c>none</c>, <c>vpnkit</c>,
    /// <c>vpnkit,ETH[,PORT]</c> (a running network's ethernet and port sockets, made absolute), <c>docker-for-mac</c>
    /// or <c>vznat</c>.
    /// </summary>
    public static NetworkSpec ParseNetworking(string? value)
    {
        var parts = (value ?? "default").Split(',', 3);
        var mode = parts[0] switch
        {
            "default" or "vmnet" => NetworkMode.Vmnet,
            "none" => NetworkMode.None,
            "vpnkit" => NetworkMode.Vpnkit,
            "docker-for-mac" => NetworkMode.DockerForMac,
            "vznat" => NetworkMode.VzNat,
            _ => throw SpecException.Usage($"-networking {value}: unknown mode (default, vmnet, none, vpnkit, vpnkit,ETH[,PORT], docker-for-mac or vznat)"),
        };
        if (parts.Length == 1)
        {
            return new NetworkSpec { Mode = mode };
        }
        if (mode != NetworkMode.Vpnkit)
        {
            throw SpecException.Usage($"-networking {value}: only vpnkit takes socket paths (vpnkit,ETH[,PORT])");
        }
        if (parts.Any(part => part.Length == 0))
        {
            throw SpecException.Usage($"-networking {value}: an empty socket path (expected vpnkit,ETH[,PORT])");
        }
        return new NetworkSpec
        {
            Mode = mode,
            VpnkitEthernetSocket = Path.GetFullPath(parts[1]),
            VpnkitPortSocket = parts.Length > 2 ? Path.GetFullPath(parts[2]) : null,
        };
    }

    /// <summary><c>-ip A.B.C.D</c>: a dotted IPv4 address (where it may sit is checked by the validator).</summary>
    public static IPAddress ParseIPv4(string value)
    {
        var parts = value.Split('.');
        if (parts.Length != 4 || parts.Any(p => !byte.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
        {
            throw SpecException.Usage($"-ip {value}: not an IPv4 address");
        }
        return IPAddress.Parse(value);
    }

    private static int ParsePort(string text, string flag, string value)
    {
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            throw SpecException.Usage($"{flag} {value}: '{text}' is not a port from 1 to 65535");
        }
        return port;
    }

    /// <summary><c>-machine q35|microvm|auto</c>; auto when not given.</summary>
    public static QemuMachineType ParseMachine(string? value) => value switch
    {
        null or "auto" => QemuMachineType.Auto,
        "q35" => QemuMachineType.Q35,
        "microvm" => QemuMachineType.Microvm,
        _ => throw SpecException.Usage($"-machine {value}: unknown machine (q35, microvm or auto)"),
    };

    /// <summary><c>-kernel-entry auto|pvh|bzimage</c>; auto when not given.</summary>
    public static KernelEntry ParseKernelEntry(string? value) => value switch
    {
        null or "auto" => KernelEntry.Auto,
        "pvh" => KernelEntry.Pvh,
        "bzimage" => KernelEntry.BzImage,
        _ => throw SpecException.Usage($"-kernel-entry {value}: unknown entry (auto, pvh or bzimage)"),
    };

    public static string NameOf(QemuMachineType machine) => machine switch
    {
        QemuMachineType.Auto => "auto",
        QemuMachineType.Q35 => "q35",
        QemuMachineType.Microvm => "microvm",
        _ => throw new ArgumentOutOfRangeException(nameof(machine)),
    };

    public static string NameOf(KernelEntry entry) => entry switch
    {
        KernelEntry.Auto => "auto",
        KernelEntry.Pvh => "pvh",
        KernelEntry.BzImage => "bzimage",
        _ => throw new ArgumentOutOfRangeException(nameof(entry)),
    };
}
