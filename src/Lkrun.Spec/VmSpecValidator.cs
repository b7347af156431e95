namespace Lkrun.Spec;

/// <summary>
/// Checks a <see cref="VmSpec"/> as a whole before anything is created on the host, with the rules that hold for
/// every engine. What an engine cannot do is its own <c>Prepare</c>'s to refuse; checks that need the host's live
/// state (ports in use, addresses held by running VMs, a data file that opens) belong to the services that own it.
/// </summary>
public static class VmSpecValidator
{
    public const int MinimumMemoryMiB = 32;
    public const int MaximumCpus = 255;

    public static void Validate(VmSpec spec)
    {
        if (spec.Cpus is < 1 or > MaximumCpus)
        {
            throw SpecException.Usage($"-cpus {spec.Cpus}: must be from 1 to {MaximumCpus}");
        }
        if (spec.MemoryMiB < MinimumMemoryMiB)
        {
            throw SpecException.Usage($"-mem {spec.MemoryMiB}: must be at least {MinimumMemoryMiB} (MiB)");
        }
        if (spec.StopTimeout <= TimeSpan.Zero)
        {
            throw SpecException.Usage($"-stop-timeout {spec.StopTimeout.TotalSeconds}: must be positive");
        }
        ValidateBoot(spec);
        ValidateDisks(spec);
        ValidateNetwork(spec.Network, spec.Engine);
        ValidateVsock(spec.VsockPorts);
        ValidateSharedDirectories(spec.SharedDirectories);
    }

    private static void ValidateBoot(VmSpec spec)
    {
        if (spec.Boot is IsoBoot { Firmware: { } firmware } && !File.Exists(firmware))
        {
            throw SpecException.MissingFile($"-fw {firmware}: no such file");
        }
        if (spec.Boot is IsoBoot && spec.Engine is QemuEngineSpec qemu)
        {
            if (qemu.Machine == QemuMachineType.Microvm)
            {
                throw SpecException.Usage("-machine microvm: boots kernels only; an ISO needs q35 (or auto)");
            }
            if (qemu.KernelEntry != KernelEntry.Auto)
            {
                throw SpecException.Usage($"-kernel-entry {FlagSyntax.NameOf(qemu.KernelEntry)}: applies to kernel boots only, not to an ISO");
            }
        }
    }

    private static void ValidateDisks(VmSpec spec)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var disk in spec.Disks)
        {
            if (!seen.Add(disk.Path))
            {
                throw SpecException.Usage($"-disk {disk.Path}: the same file is given twice");
            }
            if (Directory.Exists(disk.Path))
            {
                throw SpecException.Usage($"-disk {disk.Path}: is a directory");
            }
            if (disk.SizeMiB is null && !File.Exists(disk.Path))
            {
                throw SpecException.Usage($"-disk {disk.Path}: no such file, and no size=N to create it with");
            }
            var directory = Path.GetDirectoryName(disk.Path);
            if (!File.Exists(disk.Path) && directory != spec.StateDirectory && !Directory.Exists(directory))
            {
                throw SpecException.MissingFile($"-disk {disk.Path}: directory {directory} does not exist");
            }
        }
    }

    private static void ValidateNetwork(NetworkSpec network, EngineSpec engine)
    {
        if (network.Mode == NetworkMode.VzNat)
        {
            if (engine is not VirtualizationFrameworkEngineSpec)
            {
                throw SpecException.Usage("-networking vznat: Apple's NAT needs the virtualization.framework backend; use default or none");
            }
            if (network.PublishedPorts.Count > 0)
            {
                throw SpecException.Usage($"-publish {network.PublishedPorts[0]}: {WhyNoPublishing(network.Mode)}");
            }
            if (network.FixedAddress is { } vzNatAddress)
            {
                throw SpecException.Usage($"-ip {vzNatAddress}: not available with -networking vznat (macOS hands out the address)");
            }
            return;
        }
        if (network.Mode == NetworkMode.None)
        {
            if (network.PublishedPorts.Count > 0)
            {
                throw SpecException.Usage($"-publish {network.PublishedPorts[0]}: {WhyNoPublishing(network.Mode)}");
            }
            if (network.FixedAddress is { } address)
            {
                throw SpecException.Usage($"-ip {address}: there is no network with -networking none");
            }
            return;
        }
        if (network.Mode != NetworkMode.Vpnkit && (network.VpnkitEthernetSocket ?? network.VpnkitPortSocket) is not null)
        {
            throw SpecException.Usage("-networking: socket paths go with vpnkit only (vpnkit,ETH[,PORT])");
        }
        if (network.Mode == NetworkMode.Vpnkit && network.VpnkitEthernetSocket is { } ethernet && network.VpnkitPortSocket is null &&
            network.PublishedPorts.Count > 0)
        {
            throw SpecException.Usage(
                $"-publish {network.PublishedPorts[0]}: publishing needs the network's port socket: -networking vpnkit,{ethernet},PORT");
        }
        if (network.Mode == NetworkMode.DockerForMac && network.PublishedPorts.Count > 0)
        {
            throw SpecException.Usage(
                $"-publish {network.PublishedPorts[0]}: not available with -networking docker-for-mac (Docker Desktop's port socket speaks VPNKit's 9P protocol, which lkrun does not)");
        }
        if (network.FixedAddress is { } fixedAddress && NatSubnet.WhyNotAssignable(fixedAddress) is { } why)
        {
            throw SpecException.Usage($"-ip {fixedAddress}: {why}; choose from {NatSubnet.HostAddress(NatSubnet.FirstLeasedHost)} to {NatSubnet.HostAddress(NatSubnet.LastLeasedHost)}");
        }
        ValidatePublishedPorts(network.PublishedPorts);
    }

    /// <summary>Why a VM on <paramref name="mode"/> cannot publish ports (at start or at run time); null when it can.</summary>
    public static string? WhyNoPublishing(NetworkMode mode) => mode switch
    {
        NetworkMode.None => "there is no network with -networking none",
        NetworkMode.VzNat => "not available with -networking vznat (reach the guest by its address instead)",
        _ => null,
    };

    /// <summary>No host side and no guest side may be published twice (also checked for ports published at run time).</summary>
    public static void ValidatePublishedPorts(IEnumerable<PublishedPort> ports)
    {
        var hostSides = new HashSet<(string, int, PortProtocol)>();
        var guestSides = new HashSet<(int, PortProtocol)>();
        foreach (var port in ports)
        {
            if (!hostSides.Add((port.HostAddress.ToString(), port.HostPort, port.Protocol)) ||
                !guestSides.Add((port.GuestPort, port.Protocol)))
            {
                throw SpecException.Usage($"-publish {port}: published twice");
            }
        }
    }

    private static void ValidateSharedDirectories(ValueList<SharedDirectorySpec> shares)
    {
        var tags = new HashSet<string>(StringComparer.Ordinal);
        foreach (var share in shares)
        {
            if (!Directory.Exists(share.Path))
            {
                throw SpecException.MissingFile($"-virtiofs {share.Path}: {(File.Exists(share.Path) ? "not a directory" : "no such directory")}");
            }
            if (WhyNotATag(share.Tag) is { } why)
            {
                throw SpecException.Usage($"-virtiofs {share.Path}: tag '{share.Tag}' {why}");
            }
            if (!tags.Add(share.Tag))
            {
                throw SpecException.Usage($"-virtiofs {share.Path}: tag '{share.Tag}' is used twice");
            }
        }
    }

    /// <summary>
    /// A tag is what the guest types to mount the share, so it is printable and has no blanks; its length is what
    /// both Virtualization.framework and the virtio-fs device take (<see cref="SharedDirectorySpec.MaxTagBytes"/>).
    /// </summary>
    private static string? WhyNotATag(string tag)
    {
        if (tag.Length == 0)
        {
            return "is empty";
        }
        if (System.Text.Encoding.UTF8.GetByteCount(tag) > SharedDirectorySpec.MaxTagBytes)
        {
            return $"is longer than {SharedDirectorySpec.MaxTagBytes} bytes";
        }
        if (tag.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c == ','))
        {
            return "has a blank, control character or comma";
        }
        return null;
    }

    private static void ValidateVsock(ValueList<uint> ports)
    {
        var seen = new HashSet<uint>();
        foreach (var port in ports)
        {
            if (port is < 1 or > 65535)
            {
                throw SpecException.Usage($"-vsock-ports {port}: not a port from 1 to 65535");
            }
            if (!seen.Add(port))
            {
                throw SpecException.Usage($"-vsock-ports {port}: given twice");
            }
        }
    }
}
