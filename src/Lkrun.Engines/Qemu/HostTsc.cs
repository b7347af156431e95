using System.Globalization;

namespace Lkrun.Engines.Qemu;

/// <summary>
/// The host's TSC frequency, which a microvm guest needs on its command line under TCG. Under TCG the guest reads
/// the host's own time-stamp counter, but microvm has neither an HPET nor an ACPI PM timer to measure it against,
/// and with ACPI its PIT is no usable clock either: the kernel cannot work out the TSC frequency and never gets a
/// timer tick (KVM guests have kvmclock instead). Linux reads the frequency from <c>tsc_early_khz=</c>.
/// </summary>
public static class HostTsc
{
    /// <summary>
    /// The TSC frequency from /proc/cpuinfo, when it can be trusted: on a virtual machine without APERF/MPERF
    /// (most clouds' guests) "cpu MHz" is the kernel's calibrated TSC frequency, and a constant, nonstop TSC runs
    /// at it. Elsewhere "cpu MHz" is the current clock speed, which is no TSC frequency: null.
    /// </summary>
    public static int? KhzFromCpuInfo(string cpuInfo)
    {
        string[]? flags = null;
        double? megahertz = null;
        // The first CPU's block, up to the empty line that ends it.
        foreach (var line in cpuInfo.Split('\n').TakeWhile(line => line.Trim().Length > 0))
        {
            var colon = line.IndexOf(':');
            if (colon < 0)
            {
                continue;
            }
            var (key, value) = (line[..colon].Trim(), line[(colon + 1)..].Trim());
            if (key == "flags" && flags is null)
            {
                flags = value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            }
            else if (key == "cpu MHz" && megahertz is null &&
                     double.TryParse(value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var parsed))
            {
                megahertz = parsed;
            }
        }
        var trusted = flags is not null &&
            flags.Contains("constant_tsc") && flags.Contains("nonstop_tsc") && flags.Contains("hypervisor") && !flags.Contains("aperfmperf");
        return trusted && megahertz is > 100 and < 100_000 ? (int)Math.Round(megahertz.Value * 1000) : null;
    }
}
