using System.Runtime.InteropServices;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Plan;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Vz;

internal static class VzFixtures
{
    public const string Mac = "02:00:5e:10:00:01";

    public static VmSpec Spec(BootSource? boot = null) => new()
    {
        Name = "demo",
        Boot = boot ?? new KernelInitrdBoot("/img/demo-kernel", "/img/demo-initrd.img", "console=ttyS0 quiet\n"),
        Cpus = 2,
        MemoryMiB = 512,
        StateDirectory = "/state",
        Engine = new VirtualizationFrameworkEngineSpec(),
    };

    /// <summary>A Mac running <paramref name="macOS"/>, with the descriptors and files the host services would give.</summary>
    public static VzHostInputs Host(int macOS = 13, Architecture architecture = Architecture.Arm64) => new()
    {
        MacOS = new MacOSVersion(macOS),
        Architecture = architecture,
        Kernel = "/img/demo-kernel",
        KernelHeader = Arm64Image(),
        MachineIdentifier = macOS >= 13 ? new VzMachineIdentifierFile("/state/machine-identifier", null) : null,
        Console = new VzConsoleDescriptors(10, 10),
        NetworkDescriptor = 11,
        MacAddress = Mac,
    };

    /// <summary>The first 64 bytes of an uncompressed arm64 Linux Image: <c>ARM\x64</c> at 0x38.</summary>
    public static byte[] Arm64Image()
    {
        var header = new byte[64];
        "ARMd"u8.CopyTo(header.AsSpan(0x38));
        return header;
    }
}
