using Lkrun.Engines.Qemu;

namespace Lkrun.Engines.Tests.Qemu;

public sealed class HostTscTests
{
    private static string CpuInfo(string flags, string megahertz = "2445.432") => $"""
        processor	: 0
        vendor_id	: AuthenticAMD
        cpu MHz		: {megahertz}
        flags		: fpu tsc msr {flags} x2apic
        bogomips	: 4890.86

        processor	: 1
        cpu MHz		: 1200.000
        flags		: fpu

        """;

    [Fact]
    public void A_virtual_machine_without_aperfmperf_reports_its_tsc_frequency()
    {
        Assert.Equal(2_445_432, HostTsc.KhzFromCpuInfo(CpuInfo("constant_tsc nonstop_tsc hypervisor")));
    }

    [Theory]
    [InlineData("constant_tsc nonstop_tsc hypervisor aperfmperf")] // cpu MHz is the current clock
    [InlineData("constant_tsc nonstop_tsc")] // bare metal: likewise
    [InlineData("nonstop_tsc hypervisor")] // a TSC that follows the clock
    public void Otherwise_the_frequency_is_unknown(string flags)
    {
        Assert.Null(HostTsc.KhzFromCpuInfo(CpuInfo(flags)));
    }

    [Theory]
    [InlineData("fast")]
    [InlineData("0.5")]
    public void A_frequency_that_is_no_number_or_no_tsc_is_unknown(string megahertz)
    {
        Assert.Null(HostTsc.KhzFromCpuInfo(CpuInfo("constant_tsc nonstop_tsc hypervisor", megahertz)));
    }

    [Fact]
    public void This_hosts_cpuinfo_parses()
    {
        var khz = HostTsc.KhzFromCpuInfo(File.ReadAllText("/proc/cpuinfo"));
        Assert.True(khz is null or > 100_000);
    }
}
