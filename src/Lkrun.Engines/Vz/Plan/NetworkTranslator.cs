using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Spec;

namespace Lkrun.Engines.Vz.Plan;

/// <summary>
/// The guest's one network interface, with its stable MAC: on lkrun's own NAT network (frames over a datagram
/// socket to the network service), on Apple's NAT, or none.
/// </summary>
internal static class NetworkTranslator
{
    /// <summary>lkrun's network MTU, set on the device where the framework lets it be set (macOS 13).</summary>
    public const int LargeMtu = 65520;

    /// <summary>The MTU of a file-handle attachment that cannot be told otherwise (macOS 12).</summary>
    public const int DefaultMtu = 1500;

    /// <summary>Adds the network device; returns the MTU lkrun's network must hand out, or null when it is not used.</summary>
    public static int? Add(VzPlanBuilder plan, VzObjectRef configuration, NetworkSpec network, VzHostInputs host)
    {
        switch (network.Mode)
        {
            case NetworkMode.None:
                return null;
            case NetworkMode.Vpnkit or NetworkMode.DockerForMac:
                throw new EngineException(
                    $"-networking {(network.Mode == NetworkMode.Vpnkit ? "vpnkit" : "docker-for-mac")}: not available with the virtualization.framework backend; use default, vznat or none",
                    exitCode: 2);
            case NetworkMode.VzNat:
                {
                    var nat = plan.Create("network.attachment", "VZNATNetworkDeviceAttachment", "init", "-networking vznat", VzSources.LinuxKit + " (vmnet mode)");
                    Device(plan, configuration, nat, host);
                    return null;
                }
            case NetworkMode.Vmnet:
                {
                    var descriptor = host.NetworkDescriptor ?? throw new ArgumentException("lkrun's network needs its datagram socket", nameof(host));
                    const string subject = "the network link";
                    var handle = plan.Create("network.fileHandle", "NSFileHandle", "initWithFileDescriptor:closeOnDealloc:", subject, VzSources.VzHelper,
                        new VzDuplicatedDescriptor(descriptor), new VzBool(true));
                    var attachment = plan.Create("network.attachment", "VZFileHandleNetworkDeviceAttachment", "initWithFileHandle:", subject, null, handle);
                    var mtu = DefaultMtu;
                    if (plan.HostHas(VzCatalogue.Selector("setMaximumTransmissionUnit:").Minimum))
                    {
                        mtu = LargeMtu;
                        plan.Send(attachment, "setMaximumTransmissionUnit:", subject, null, new VzInteger(mtu));
                    }
                    Device(plan, configuration, attachment, host);
                    return mtu;
                }
            default:
                throw new EngineException($"-networking: unknown mode {network.Mode}", exitCode: 2);
        }
    }

    private static void Device(VzPlanBuilder plan, VzObjectRef configuration, VzObjectRef attachment, VzHostInputs host)
    {
        var mac = host.MacAddress ?? throw new ArgumentException("the network device needs the VM's MAC address", nameof(host));
        var subject = $"the MAC address {mac}";
        var device = plan.Create("network", "VZVirtioNetworkDeviceConfiguration", "init", "the network device");
        plan.Send(device, "setAttachment:", "the network device", null, attachment);
        var address = plan.Create("network.macAddress", "VZMACAddress", "initWithString:", subject, null, new VzString(mac));
        plan.Send(device, "setMACAddress:", subject, null, address);
        plan.SetDevices(configuration, "setNetworkDevices:", [device], "the network device");
    }
}
