using Lkrun.Spec;

namespace Lkrun.Engines.Vz.Plan;

/// <summary>
/// <c>-virtiofs</c> shares: one virtio-fs device per directory, found in the guest by its tag. The framework raises
/// an Objective-C exception for a tag it refuses, so each tag is checked with <c>validateTag:error:</c> first.
/// </summary>
internal static class ShareTranslator
{
    public static void Add(VzPlanBuilder plan, VzObjectRef configuration, ValueList<SharedDirectorySpec> shares)
    {
        var devices = new List<VzObjectRef>();
        for (var i = 0; i < shares.Count; i++)
        {
            var share = shares[i];
            var subject = $"-virtiofs {share.Path}";
            var name = $"share{i}";
            plan.Check(new VzClassRef("VZVirtioFileSystemDeviceConfiguration"), "validateTag:error:", subject, new VzString(share.Tag));
            var directory = plan.Create($"{name}.directory", "VZSharedDirectory", "initWithURL:readOnly:", subject, null,
                new VzFileUrl(share.Path), new VzBool(share.ReadOnly));
            var single = plan.Create($"{name}.share", "VZSingleDirectoryShare", "initWithDirectory:", subject, null, directory);
            var device = plan.Create(name, "VZVirtioFileSystemDeviceConfiguration", "initWithTag:", subject,
                VzSources.LinuxKit + " (tags virtiofs<N>)", new VzString(share.Tag));
            plan.Send(device, "setShare:", subject, null, single);
            devices.Add(device);
        }
        plan.SetDevices(configuration, "setDirectorySharingDevices:", devices, "the -virtiofs shares");
    }
}
