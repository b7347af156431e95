using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Spec;

namespace Lkrun.Engines.Vz.Plan;

/// <summary>
/// Storage in the guest's order, as on QEMU: what the boot needs first (the squashfs root, <c>/dev/vda</c>, or
/// the boot ISO), then the <c>-disk</c> disks in command-line order, then the metadata CD.
/// </summary>
internal static class StorageTranslator
{
    /// <summary><c>VZDiskImageCachingModeCached</c> (VZDiskImageStorageDeviceAttachment.h, macOS 12.3 SDK).</summary>
    public const long CachingModeCached = 2;

    /// <summary><c>VZDiskImageSynchronizationModeFsync</c> (same header).</summary>
    public const long SynchronizationModeFsync = 2;

    public static void Add(VzPlanBuilder plan, VzObjectRef configuration, IReadOnlyList<VzObjectRef> bootDevices, ValueList<DiskSpec> disks, string? metadataIso)
    {
        var devices = new List<VzObjectRef>(bootDevices);
        for (var i = 0; i < disks.Count; i++)
        {
            devices.Add(Disk(plan, $"disk{i}", disks[i]));
        }
        if (metadataIso is not null)
        {
            // USB mass storage needs macOS 13; before it the CD is a read-only virtio disk, as upstream attaches ISOs.
            var usb = plan.HostHas(MacOSVersion.Ventura);
            devices.Add(ReadOnlyImage(plan, "cidata", metadataIso, usb, $"the metadata CD {metadataIso}",
                usb ? VzSources.VfkitUsage + " (ISOs on USB mass storage)" : VzSources.LinuxKit + " (ISOs read-only on virtio-blk)"));
        }
        plan.SetDevices(configuration, "setStorageDevices:", devices, "the VM's disks");
    }

    /// <summary>A read-only raw image (a squashfs root or an ISO) on virtio-blk or, on macOS 13 and newer, USB mass storage.</summary>
    public static VzObjectRef ReadOnlyImage(VzPlanBuilder plan, string name, string path, bool usb, string subject, string source)
    {
        var attachment = plan.Create($"{name}.attachment", "VZDiskImageStorageDeviceAttachment", "initWithURL:readOnly:error:", subject, null,
            new VzFileUrl(path), new VzBool(true));
        return plan.Create(name, usb ? "VZUSBMassStorageDeviceConfiguration" : "VZVirtioBlockDeviceConfiguration", "initWithAttachment:", subject, source, attachment);
    }

    /// <summary>
    /// A persistent disk: raw, read-write, host caching on and flushes as fsync. The framework's Automatic caching
    /// corrupts Linux guest filesystems, so the mode is always given.
    /// </summary>
    private static VzObjectRef Disk(VzPlanBuilder plan, string name, DiskSpec disk)
    {
        if (disk.Format != DiskFormat.Raw)
        {
            throw new EngineException($"-disk {disk.Path}: format=qcow2 needs the qemu backend; disks are raw elsewhere", exitCode: 2);
        }
        var subject = $"-disk {disk.Path}";
        var attachment = plan.Create($"{name}.attachment", "VZDiskImageStorageDeviceAttachment", "initWithURL:readOnly:cachingMode:synchronizationMode:error:", subject,
            VzSources.VfkitDisks,
            new VzFileUrl(disk.Path), new VzBool(false), new VzInteger(CachingModeCached, "Cached"), new VzInteger(SynchronizationModeFsync, "Fsync"));
        return plan.Create(name, "VZVirtioBlockDeviceConfiguration", "initWithAttachment:", subject, VzSources.QemuEngine, attachment);
    }
}
