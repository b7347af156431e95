namespace Lkrun.Spec.LinuxKit;

/// <summary>The boot flags as given: at most one of kernel, squashfs and ISO may be forced.</summary>
public sealed record BootRequest(bool ForceKernel, bool Squashfs, bool Iso, bool Uefi, string? Firmware)
{
    public static readonly BootRequest Detect = new(false, false, false, false, null);
}
