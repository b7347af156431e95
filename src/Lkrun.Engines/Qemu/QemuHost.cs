using System.Runtime.InteropServices;

namespace Lkrun.Engines.Qemu;

/// <summary>
/// What this host offers QEMU: the binary to run and the accelerator to use, whether software emulation was
/// chosen because KVM is not usable (rather than asked for), and, under TCG, the host's TSC frequency in kHz when
/// it is known (<see cref="HostTsc"/>).
/// </summary>
public sealed record QemuHost(string Binary, string Accelerator, bool EmulatedForLackOfKvm = false, int? TscKhz = null)
{
    public const string DefaultBinaryName = "qemu-system-x86_64";

    public bool IsKvm => Accelerator == "kvm";

    /// <summary>
    /// Resolves the binary (<c>-qemu</c> or PATH) and the accelerator (<c>-accel</c>, else KVM when /dev/kvm can be
    /// opened, else TCG).
    /// </summary>
    public static QemuHost Discover(string? binary, string? accelerator)
    {
        if (RuntimeInformation.OSArchitecture != Architecture.X64)
        {
            throw new EngineException($"the qemu backend runs x86_64 guests on x86_64 hosts; this host is {RuntimeInformation.OSArchitecture}");
        }
        var resolved = binary is null ? FindOnPath(DefaultBinaryName) : File.Exists(binary) ? Path.GetFullPath(binary) : null;
        if (resolved is null)
        {
            throw binary is null
                ? new EngineException($"{DefaultBinaryName} not found on PATH; install QEMU (Debian/Ubuntu: apt-get install qemu-system-x86) or give -qemu PATH")
                : new EngineException($"-qemu {binary}: no such file");
        }
        var host = accelerator is not null
            ? new QemuHost(resolved, accelerator)
            : KvmUsable() ? new QemuHost(resolved, "kvm") : new QemuHost(resolved, "tcg", EmulatedForLackOfKvm: true);
        return host.IsKvm ? host : host with { TscKhz = HostTsc.KhzFromCpuInfo(File.ReadAllText("/proc/cpuinfo")) };
    }

    /// <summary>
    /// KVM needs both the device and the CPU's virtualization extensions: some VMs expose a /dev/kvm that opens but
    /// cannot run guests because the hypervisor hides VMX/SVM from them.
    /// </summary>
    private static bool KvmUsable()
    {
        try
        {
            using var kvm = new FileStream("/dev/kvm", FileMode.Open, FileAccess.ReadWrite);
            return File.ReadLines("/proc/cpuinfo")
                .Where(line => line.StartsWith("flags", StringComparison.Ordinal))
                .Take(1)
                .Any(flags => flags.Split(' ', '\t').Any(flag => flag is "vmx" or "svm"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);
}
