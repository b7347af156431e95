using System.Collections.Frozen;

namespace Lkrun.Engines.Vz.Catalogue;

/// <summary>A class lkrun looks up: the first macOS that has it, and the header that says so.</summary>
public sealed record ClassInfo(string Name, MacOSVersion Minimum, string Source);

/// <summary>A selector lkrun sends: its prototype, the first macOS that has it, and the header that says so.</summary>
public sealed record SelectorInfo(string Name, MessageShape Shape, MacOSVersion Minimum, string Source);

/// <summary>
/// Every Objective-C class and selector lkrun uses, as data: the plan names them, the executor and the runtime send
/// them through the shape recorded here, and tests check each against the other. Versions follow the
/// <c>API_AVAILABLE</c> annotations of Apple's SDK headers (phracker/MacOSX-SDKs, alexey-lysiuk/macos-sdk) and the
/// <c>@available</c> guards of Code-Hex/vz.
/// </summary>
public static class VzCatalogue
{
    private const string Sdk11 = "macOS 11.3 SDK";
    private const string Sdk12 = "macOS 12.3 SDK";
    private const string Sdk13 = "macOS 13.0 SDK";
    private const string Sdk14 = "macOS 14.4 SDK";
    private const string FoundationHeaders = "Foundation";

    private static readonly MacOSVersion Base = MacOSVersion.Foundation;
    private static readonly MacOSVersion V11 = MacOSVersion.BigSur;
    private static readonly MacOSVersion V12 = MacOSVersion.Monterey;
    private static readonly MacOSVersion V13 = MacOSVersion.Ventura;

    public static readonly FrozenDictionary<string, ClassInfo> Classes = new ClassInfo[]
    {
        new("NSObject", Base, "objc/NSObject.h"),
        new("NSString", Base, $"NSString.h ({FoundationHeaders})"),
        new("NSURL", Base, $"NSURL.h ({FoundationHeaders})"),
        new("NSArray", Base, $"NSArray.h ({FoundationHeaders})"),
        new("NSData", Base, $"NSData.h ({FoundationHeaders})"),
        new("NSFileHandle", Base, $"NSFileHandle.h ({FoundationHeaders})"),
        new("VZVirtualMachineConfiguration", V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("VZLinuxBootLoader", V11, $"VZLinuxBootLoader.h ({Sdk11})"),
        new("VZEFIBootLoader", V13, $"VZEFIBootLoader.h ({Sdk13})"),
        new("VZEFIVariableStore", V13, $"VZEFIVariableStore.h ({Sdk13})"),
        new("VZGenericPlatformConfiguration", V12, $"VZGenericPlatformConfiguration.h ({Sdk13})"),
        new("VZGenericMachineIdentifier", V13, $"VZGenericMachineIdentifier.h ({Sdk13})"),
        new("VZFileHandleSerialPortAttachment", V11, $"VZFileHandleSerialPortAttachment.h ({Sdk11})"),
        new("VZVirtioConsoleDeviceSerialPortConfiguration", V11, $"VZVirtioConsoleDeviceSerialPortConfiguration.h ({Sdk12})"),
        new("VZDiskImageStorageDeviceAttachment", V11, $"VZDiskImageStorageDeviceAttachment.h ({Sdk12})"),
        new("VZVirtioBlockDeviceConfiguration", V11, $"VZVirtioBlockDeviceConfiguration.h ({Sdk12})"),
        new("VZUSBMassStorageDeviceConfiguration", V13, $"VZUSBMassStorageDeviceConfiguration.h ({Sdk13}; Code-Hex/vz virtualization_13.m)"),
        new("VZFileHandleNetworkDeviceAttachment", V11, $"VZFileHandleNetworkDeviceAttachment.h ({Sdk14})"),
        new("VZNATNetworkDeviceAttachment", V11, $"VZNATNetworkDeviceAttachment.h ({Sdk11})"),
        new("VZVirtioNetworkDeviceConfiguration", V11, $"VZVirtioNetworkDeviceConfiguration.h ({Sdk11})"),
        new("VZMACAddress", V11, $"VZMACAddress.h ({Sdk11})"),
        new("VZVirtioSocketDeviceConfiguration", V11, $"VZVirtioSocketDeviceConfiguration.h ({Sdk11})"),
        new("VZVirtioEntropyDeviceConfiguration", V11, $"VZVirtioEntropyDeviceConfiguration.h ({Sdk11})"),
        new("VZVirtioTraditionalMemoryBalloonDeviceConfiguration", V11, $"VZVirtioTraditionalMemoryBalloonDeviceConfiguration.h ({Sdk11})"),
        new("VZSharedDirectory", V12, $"VZSharedDirectory.h ({Sdk12})"),
        new("VZSingleDirectoryShare", V12, $"VZSingleDirectoryShare.h ({Sdk12})"),
        new("VZVirtioFileSystemDeviceConfiguration", V12, $"VZVirtioFileSystemDeviceConfiguration.h ({Sdk14})"),
        new("VZVirtualMachine", V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("VZVirtioSocketListener", V11, $"VZVirtioSocketListener.h ({Sdk12})"),
    }.ToFrozenDictionary(info => info.Name, StringComparer.Ordinal);

    public static readonly FrozenDictionary<string, SelectorInfo> Selectors = new SelectorInfo[]
    {
        // Reference counting and the Foundation objects the engine passes and reads back.
        new("alloc", MessageShape.ReturnsObject, Base, "objc/NSObject.h"),
        new("init", MessageShape.ReturnsObject, Base, "objc/NSObject.h"),
        new("retain", MessageShape.ReturnsObject, Base, "objc/NSObject.h"),
        new("release", MessageShape.ReturnsVoid, Base, "objc/NSObject.h"),
        new("stringWithUTF8String:", MessageShape.CStringReturnsObject, Base, $"NSString.h ({FoundationHeaders})"),
        new("UTF8String", MessageShape.ReturnsCString, Base, $"NSString.h ({FoundationHeaders})"),
        new("fileURLWithPath:", MessageShape.ObjectReturnsObject, Base, $"NSURL.h ({FoundationHeaders})"),
        new("arrayWithObjects:count:", MessageShape.ObjectArrayReturnsObject, Base, $"NSArray.h ({FoundationHeaders})"),
        new("count", MessageShape.ReturnsUnsigned, Base, $"NSArray.h ({FoundationHeaders})"),
        new("objectAtIndex:", MessageShape.UnsignedReturnsObject, Base, $"NSArray.h ({FoundationHeaders})"),
        new("dataWithBytes:length:", MessageShape.BytesReturnsObject, Base, $"NSData.h ({FoundationHeaders})"),
        new("length", MessageShape.ReturnsUnsigned, Base, $"NSData.h ({FoundationHeaders})"),
        new("getBytes:length:", MessageShape.BytesOutReturnsVoid, Base, $"NSData.h ({FoundationHeaders})"),
        new("localizedDescription", MessageShape.ReturnsObject, Base, $"NSError.h ({FoundationHeaders})"),
        new("domain", MessageShape.ReturnsObject, Base, $"NSError.h ({FoundationHeaders})"),
        new("code", MessageShape.ReturnsInteger, Base, $"NSError.h ({FoundationHeaders})"),
        new("initWithFileDescriptor:closeOnDealloc:", MessageShape.Int32BoolReturnsObject, Base, $"NSFileHandle.h ({FoundationHeaders})"),
        new("addObserver:forKeyPath:options:context:", MessageShape.ObjectObjectUnsignedPointerReturnsVoid, Base, $"NSKeyValueObserving.h ({FoundationHeaders})"),
        new("removeObserver:forKeyPath:", MessageShape.ObjectObjectReturnsVoid, Base, $"NSKeyValueObserving.h ({FoundationHeaders})"),

        // The configuration.
        new("setBootLoader:", MessageShape.ObjectReturnsVoid, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setCPUCount:", MessageShape.UnsignedReturnsVoid, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setMemorySize:", MessageShape.UInt64ReturnsVoid, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setPlatform:", MessageShape.ObjectReturnsVoid, V12, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setSerialPorts:", MessageShape.ObjectReturnsVoid, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setStorageDevices:", MessageShape.ObjectReturnsVoid, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setNetworkDevices:", MessageShape.ObjectReturnsVoid, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setEntropyDevices:", MessageShape.ObjectReturnsVoid, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setMemoryBalloonDevices:", MessageShape.ObjectReturnsVoid, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setSocketDevices:", MessageShape.ObjectReturnsVoid, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("setDirectorySharingDevices:", MessageShape.ObjectReturnsVoid, V12, $"VZVirtualMachineConfiguration.h ({Sdk13})"),
        new("validateWithError:", MessageShape.ErrorOutReturnsBool, V11, $"VZVirtualMachineConfiguration.h ({Sdk13})"),

        // Boot loaders, the platform and its identity.
        new("initWithKernelURL:", MessageShape.ObjectReturnsObject, V11, $"VZLinuxBootLoader.h ({Sdk11})"),
        new("setCommandLine:", MessageShape.ObjectReturnsVoid, V11, $"VZLinuxBootLoader.h ({Sdk11})"),
        new("setInitialRamdiskURL:", MessageShape.ObjectReturnsVoid, V11, $"VZLinuxBootLoader.h ({Sdk11})"),
        new("setVariableStore:", MessageShape.ObjectReturnsVoid, V13, $"VZEFIBootLoader.h ({Sdk13})"),
        new("initWithURL:", MessageShape.ObjectReturnsObject, V13, $"VZEFIVariableStore.h ({Sdk13})"),
        new("initCreatingVariableStoreAtURL:options:error:", MessageShape.ObjectUnsignedErrorOutReturnsObject, V13, $"VZEFIVariableStore.h ({Sdk13})"),
        new("setMachineIdentifier:", MessageShape.ObjectReturnsVoid, V13, $"VZGenericPlatformConfiguration.h ({Sdk13})"),
        new("initWithDataRepresentation:", MessageShape.ObjectReturnsObject, V13, $"VZGenericMachineIdentifier.h ({Sdk13})"),
        new("dataRepresentation", MessageShape.ReturnsObject, V13, $"VZGenericMachineIdentifier.h ({Sdk13})"),

        // Console, storage, network, shares.
        new("initWithFileHandleForReading:fileHandleForWriting:", MessageShape.ObjectObjectReturnsObject, V11, $"VZFileHandleSerialPortAttachment.h ({Sdk11})"),
        new("setAttachment:", MessageShape.ObjectReturnsVoid, V11, $"VZSerialPortConfiguration.h, VZNetworkDeviceConfiguration.h ({Sdk11})"),
        new("initWithURL:readOnly:error:", MessageShape.ObjectBoolErrorOutReturnsObject, V11, $"VZDiskImageStorageDeviceAttachment.h ({Sdk12})"),
        new("initWithURL:readOnly:cachingMode:synchronizationMode:error:", MessageShape.ObjectBoolIntegerIntegerErrorOutReturnsObject, V12, $"VZDiskImageStorageDeviceAttachment.h ({Sdk12})"),
        new("initWithAttachment:", MessageShape.ObjectReturnsObject, V11, $"VZVirtioBlockDeviceConfiguration.h ({Sdk12}), VZUSBMassStorageDeviceConfiguration.h ({Sdk13})"),
        new("initWithFileHandle:", MessageShape.ObjectReturnsObject, V11, $"VZFileHandleNetworkDeviceAttachment.h ({Sdk14})"),
        new("setMaximumTransmissionUnit:", MessageShape.IntegerReturnsVoid, V13, $"VZFileHandleNetworkDeviceAttachment.h ({Sdk14})"),
        new("setMACAddress:", MessageShape.ObjectReturnsVoid, V11, $"VZNetworkDeviceConfiguration.h ({Sdk11})"),
        new("initWithString:", MessageShape.ObjectReturnsObject, V11, $"VZMACAddress.h ({Sdk11})"),
        new("initWithURL:readOnly:", MessageShape.ObjectBoolReturnsObject, V12, $"VZSharedDirectory.h ({Sdk12})"),
        new("initWithDirectory:", MessageShape.ObjectReturnsObject, V12, $"VZSingleDirectoryShare.h ({Sdk12})"),
        new("initWithTag:", MessageShape.ObjectReturnsObject, V12, $"VZVirtioFileSystemDeviceConfiguration.h ({Sdk14})"),
        new("validateTag:error:", MessageShape.ObjectErrorOutReturnsBool, V12, $"VZVirtioFileSystemDeviceConfiguration.h ({Sdk14})"),
        new("setShare:", MessageShape.ObjectReturnsVoid, V12, $"VZVirtioFileSystemDeviceConfiguration.h ({Sdk14})"),

        // The virtual machine.
        new("initWithConfiguration:queue:", MessageShape.ObjectQueueReturnsObject, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("setDelegate:", MessageShape.ObjectReturnsVoid, V11, $"VZVirtualMachine.h ({Sdk14}), VZVirtioSocketListener.h ({Sdk12})"),
        new("state", MessageShape.ReturnsInteger, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("canStart", MessageShape.ReturnsBool, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("canPause", MessageShape.ReturnsBool, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("canResume", MessageShape.ReturnsBool, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("canRequestStop", MessageShape.ReturnsBool, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("canStop", MessageShape.ReturnsBool, V12, $"VZVirtualMachine.h ({Sdk14})"),
        new("startWithCompletionHandler:", MessageShape.BlockReturnsVoid, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("pauseWithCompletionHandler:", MessageShape.BlockReturnsVoid, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("resumeWithCompletionHandler:", MessageShape.BlockReturnsVoid, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("stopWithCompletionHandler:", MessageShape.BlockReturnsVoid, V12, $"VZVirtualMachine.h ({Sdk14})"),
        new("requestStopWithError:", MessageShape.ErrorOutReturnsBool, V11, $"VZVirtualMachine.h ({Sdk14})"),
        new("socketDevices", MessageShape.ReturnsObject, V11, $"VZVirtualMachine.h ({Sdk14})"),

        // vsock.
        new("connectToPort:completionHandler:", MessageShape.UInt32BlockReturnsVoid, V11, $"VZVirtioSocketDevice.h ({Sdk11})"),
        new("setSocketListener:forPort:", MessageShape.ObjectUInt32ReturnsVoid, V11, $"VZVirtioSocketDevice.h ({Sdk11})"),
        new("removeSocketListenerForPort:", MessageShape.UInt32ReturnsVoid, V11, $"VZVirtioSocketDevice.h ({Sdk11})"),
        new("fileDescriptor", MessageShape.ReturnsInt32, V11, $"VZVirtioSocketConnection.h ({Sdk11})"),
        new("close", MessageShape.ReturnsVoid, V11, $"VZVirtioSocketConnection.h ({Sdk11})"),
    }.ToFrozenDictionary(info => info.Name, StringComparer.Ordinal);

    /// <summary>The catalogue's entry for <paramref name="name"/>; a selector missing from it is a bug in lkrun.</summary>
    public static SelectorInfo Selector(string name) =>
        Selectors.TryGetValue(name, out var info) ? info : throw new KeyNotFoundException($"selector {name} is not in the VZ catalogue");

    public static ClassInfo Class(string name) =>
        Classes.TryGetValue(name, out var info) ? info : throw new KeyNotFoundException($"class {name} is not in the VZ catalogue");
}
