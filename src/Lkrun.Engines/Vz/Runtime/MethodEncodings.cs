using System.Runtime.InteropServices;

namespace Lkrun.Engines.Vz.Runtime;

/// <summary>
/// The Objective-C type encodings of the methods lkrun adds to its run-time classes (<c>class_addMethod</c>):
/// <c>v</c> void, <c>@</c> an object, <c>:</c> the selector, <c>^v</c> a <c>void *</c>. <c>BOOL</c> is <c>signed
/// char</c> (<c>c</c>) on x86_64 and C <c>bool</c> (<c>B</c>) on arm64, where <c>OBJC_BOOL_IS_BOOL</c> is set
/// (objc4 runtime/objc.h); either way it is one byte, which is what lkrun's callbacks return.
/// </summary>
public static class MethodEncodings
{
    public const string GuestDidStopVirtualMachine = "v@:@";
    public const string VirtualMachineDidStopWithError = "v@:@@";
    public const string AttachmentWasDisconnected = "v@:@@@";
    public const string ObserveValueForKeyPath = "v@:@@@^v";

    public static char Bool(Architecture architecture) => architecture switch
    {
        Architecture.Arm64 => 'B',
        Architecture.X64 => 'c',
        _ => throw new PlatformNotSupportedException($"Virtualization.framework does not run on {architecture}"),
    };

    /// <summary><c>-(BOOL)listener:shouldAcceptNewConnection:fromSocketDevice:</c>.</summary>
    public static string ShouldAcceptNewConnection(Architecture architecture) => $"{Bool(architecture)}@:@@@";
}
