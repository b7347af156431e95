using Lkrun.Services.State;
using Lkrun.Engines.Vz.Machine;
using Lkrun.Engines.Vz.Plan;

namespace Lkrun.Engines.Tests.Vz;

public sealed class VzHostTests : IDisposable
{
    private readonly DirectoryInfo _state = Directory.CreateTempSubdirectory("lkrun-vzhost-");

    public void Dispose() => _state.Delete(recursive: true);

    [Fact]
    public void The_runtime_is_refused_off_macOS_in_one_line()
    {
        Assert.SkipWhen(OperatingSystem.IsMacOS(), "this host is a Mac");
        var error = Assert.Throws<EngineException>(() => VzHost.LoadRuntime(_ => { }));
        Assert.Equal("the virtualization.framework backend needs macOS; on this system use the qemu backend (lkrun run qemu ...)", error.Message);
        Assert.Equal(2, error.ExitCode);
        Assert.Equal(0, VzHost.MacOS.Major);
    }

    [Fact]
    public void The_kernel_header_is_its_first_64_bytes_or_less()
    {
        var kernel = Path.Combine(_state.FullName, "kernel");
        var image = VzFixtures.Arm64Image().Concat(new byte[1000]).ToArray();
        File.WriteAllBytes(kernel, image);
        Assert.Equal(image[..64], VzHost.ReadKernelHeader(kernel));
        File.WriteAllBytes(kernel, [1, 2, 3]);
        Assert.Equal([1, 2, 3], VzHost.ReadKernelHeader(kernel));
    }

    [Fact]
    public void State_files_say_what_an_earlier_run_left()
    {
        var layout = new StateLayout(_state.FullName);
        Assert.Equal(new VzEfiVariableStoreFile(Path.Combine(_state.FullName, "efi-variable-store"), false), VzHost.EfiVariableStore(layout));
        Assert.Null(VzHost.MachineIdentifier(layout).Existing);

        File.WriteAllBytes(Path.Combine(_state.FullName, "efi-variable-store"), [0]);
        File.WriteAllBytes(Path.Combine(_state.FullName, "machine-identifier"), [9, 8, 7]);

        Assert.True(VzHost.EfiVariableStore(layout).Exists);
        Assert.Equal([9, 8, 7], VzHost.MachineIdentifier(layout).Existing);
    }
}
