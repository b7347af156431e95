namespace Lkrun.Services.Interop;

/// <summary>Raw descriptor calls for code that hands descriptors to a framework which closes them itself.</summary>
public static class Descriptors
{
    /// <summary>
    /// A new descriptor for what <paramref name="descriptor"/> refers to, closed on exec, that the caller owns.
    /// Throws <see cref="SystemCallException"/> naming the error (when the process is out of descriptors, say).
    /// </summary>
    public static int DuplicateCloseOnExec(int descriptor) => Posix.DuplicateNumberCloseOnExec(descriptor);

    public static void Close(int descriptor) => LibC.close(descriptor);
}
