namespace Lkrun.Engines.Vz.Plan;

/// <summary>
/// The guest's console: one virtio console port (hvc0 in the guest) on file handles over lkrun's console relay.
/// Each handle wraps a duplicate of the host's descriptor and closes it, as Code-Hex/vz wraps its descriptors.
/// </summary>
internal static class ConsoleTranslator
{
    public static void Add(VzPlanBuilder plan, VzObjectRef configuration, VzConsoleDescriptors console)
    {
        const string subject = "the console";
        VzArgument input = VzNil.Value;
        if (console.Input is { } inputDescriptor)
        {
            input = plan.Create("console.input", "NSFileHandle", "initWithFileDescriptor:closeOnDealloc:", subject, VzSources.VzHelper,
                new VzDuplicatedDescriptor(inputDescriptor), new VzBool(true));
        }
        var output = plan.Create("console.output", "NSFileHandle", "initWithFileDescriptor:closeOnDealloc:", subject, VzSources.VzHelper,
            new VzDuplicatedDescriptor(console.Output), new VzBool(true));
        var attachment = plan.Create("console.attachment", "VZFileHandleSerialPortAttachment", "initWithFileHandleForReading:fileHandleForWriting:", subject, null,
            input, output);
        var port = plan.Create("console", "VZVirtioConsoleDeviceSerialPortConfiguration", "init", subject, VzSources.LinuxKit + " (serial console on stdio)");
        plan.Send(port, "setAttachment:", subject, null, attachment);
        plan.SetDevices(configuration, "setSerialPorts:", [port], subject);
    }
}
