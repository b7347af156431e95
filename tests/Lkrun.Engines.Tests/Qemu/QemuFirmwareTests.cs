using Lkrun.Engines.Qemu;

namespace Lkrun.Engines.Tests.Qemu;

public sealed class QemuFirmwareTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-fw-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")]
    [InlineData("edk2-x86_64-code.fd", "edk2-x86_64-vars.fd")]
    [InlineData("edk2-x86_64-code.fd", "edk2-i386-vars.fd")]
    public void A_requested_split_firmware_finds_its_variable_store_beside_it(string code, string variables)
    {
        File.WriteAllText(Path.Combine(_dir, code), "");
        File.WriteAllText(Path.Combine(_dir, variables), "");
        Assert.Equal(new QemuFirmware(Path.Combine(_dir, code), Path.Combine(_dir, variables)), QemuFirmware.Find(Path.Combine(_dir, code)));
    }

    [Fact]
    public void A_requested_single_file_firmware_has_no_separate_store()
    {
        File.WriteAllText(Path.Combine(_dir, "OVMF.fd"), "");
        Assert.Equal(new QemuFirmware(Path.Combine(_dir, "OVMF.fd"), null), QemuFirmware.Find(Path.Combine(_dir, "OVMF.fd")));
    }

    [Fact]
    public void Installed_ovmf_is_found_without_a_request()
    {
        Assert.SkipUnless(File.Exists("/usr/share/OVMF/OVMF_CODE_4M.fd"), "needs Debian's ovmf package");
        var firmware = QemuFirmware.Find(null);
        Assert.True(File.Exists(firmware.Code));
        Assert.True(File.Exists(firmware.VariablesTemplate));
    }
}
