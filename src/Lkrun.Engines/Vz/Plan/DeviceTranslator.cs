namespace Lkrun.Engines.Vz.Plan;

/// <summary>The devices every VM has, as upstream gives them: vsock (guest CID 3), entropy and a memory balloon.</summary>
internal static class DeviceTranslator
{
    public static void Add(VzPlanBuilder plan, VzObjectRef configuration)
    {
        const string source = VzSources.LinuxKit + " (always present)";
        var vsock = plan.Create("vsock", "VZVirtioSocketDeviceConfiguration", "init", "the vsock device", source);
        plan.SetDevices(configuration, "setSocketDevices:", [vsock], "the vsock device");
        var entropy = plan.Create("entropy", "VZVirtioEntropyDeviceConfiguration", "init", "the entropy device", source);
        plan.SetDevices(configuration, "setEntropyDevices:", [entropy], "the entropy device");
        var balloon = plan.Create("balloon", "VZVirtioTraditionalMemoryBalloonDeviceConfiguration", "init", "the memory balloon", source);
        plan.SetDevices(configuration, "setMemoryBalloonDevices:", [balloon], "the memory balloon");
    }
}
