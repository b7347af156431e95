namespace Lkrun.Engines.Qemu;

/// <summary>
/// EFI firmware for QEMU: the read-only code image and, when the firmware comes split, the template of its
/// variable store (each VM boots with its own writable copy of it).
/// </summary>
public sealed record QemuFirmware(string Code, string? VariablesTemplate)
{
    /// <summary>Where Debian/Ubuntu, Fedora and Homebrew install OVMF: code and variable store, best first.</summary>
    private static readonly (string Code, string Variables)[] KnownLocations =
    [
        ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
        ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
        ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
        ("/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"),
        ("/opt/homebrew/share/qemu/edk2-x86_64-code.fd", "/opt/homebrew/share/qemu/edk2-i386-vars.fd"),
        ("/usr/local/share/qemu/edk2-x86_64-code.fd", "/usr/local/share/qemu/edk2-i386-vars.fd"),
    ];

    /// <summary>
    /// The firmware <c>-fw</c> names (its variable store is the file beside it named as in the known places, or
    /// whose name says VARS for CODE, when there is one; otherwise it is a single image holding both), or the first
    /// OVMF found in the known places.
    /// </summary>
    public static QemuFirmware Find(string? requested)
    {
        if (requested is not null)
        {
            var name = Path.GetFileName(requested);
            var directory = Path.GetDirectoryName(requested) ?? ".";
            // QEMU's own edk2 build pairs x86_64-code with i386-vars, which no renaming rule finds.
            var candidates = KnownLocations.Where(known => Path.GetFileName(known.Code) == name).Select(known => Path.GetFileName(known.Variables))
                .Append(name.Replace("CODE", "VARS", StringComparison.Ordinal).Replace("code", "vars", StringComparison.Ordinal))
                .Select(candidate => Path.Combine(directory, candidate));
            return new QemuFirmware(requested, candidates.FirstOrDefault(candidate => candidate != requested && File.Exists(candidate)));
        }
        foreach (var (code, variables) in KnownLocations)
        {
            if (File.Exists(code) && File.Exists(variables))
            {
                return new QemuFirmware(code, variables);
            }
        }
        throw new EngineException(
            "no EFI firmware found for --uefi; install OVMF (Debian/Ubuntu: apt-get install ovmf, Fedora: edk2-ovmf, macOS: brew install qemu) or give -fw PATH");
    }
}
