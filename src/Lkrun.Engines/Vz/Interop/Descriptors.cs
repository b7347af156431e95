using System.Runtime.InteropServices;

namespace Lkrun.Engines.Vz.Interop;

/// <summary>The two descriptor calls the engine makes, on macOS and (for tests) on Linux.</summary>
internal static partial class Descriptors
{
    private const string Library = "libc";
    private const int EINTR = 4;

    /// <summary>F_DUPFD_CLOEXEC: 67 in macOS's sys/fcntl.h, 1030 in Linux's.</summary>
    private static readonly int DuplicateCloseOnExecCommand = OperatingSystem.IsMacOS() ? 67 : 1030;

    /// <summary>
    /// A new descriptor for what <paramref name="descriptor"/> refers to, closed on exec, that the caller owns.
    /// Throws <see cref="IOException"/> naming the error when the process is out of descriptors.
    /// </summary>
    public static int DuplicateCloseOnExec(int descriptor)
    {
        int duplicate;
        do
        {
            duplicate = OperatingSystem.IsMacOS() && RuntimeInformation.ProcessArchitecture == Architecture.Arm64
                ? fcntl_darwin_arm64(descriptor, DuplicateCloseOnExecCommand, 0, 0, 0, 0, 0, 0, 0)
                : fcntl(descriptor, DuplicateCloseOnExecCommand, 0);
        }
        while (duplicate == -1 && Marshal.GetLastPInvokeError() == EINTR);
        return duplicate == -1
            ? throw new IOException($"cannot duplicate descriptor {descriptor}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}")
            : duplicate;
    }

    public static void Close(int descriptor) => close(descriptor);

    [LibraryImport(Library, SetLastError = true)]
    private static partial int fcntl(int descriptor, int command, int argument);

    /// <summary>
    /// fcntl is variadic, and Apple's arm64 convention passes variadic arguments on the stack: six placeholders fill
    /// the remaining argument registers so that the real third argument lands in the first stack slot.
    /// </summary>
    [LibraryImport(Library, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int fcntl_darwin_arm64(int descriptor, int command, long x2, long x3, long x4, long x5, long x6, long x7, long argument);

    [LibraryImport(Library)]
    private static partial int close(int descriptor);
}
