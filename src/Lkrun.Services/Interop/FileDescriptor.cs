using Microsoft.Win32.SafeHandles;

namespace Lkrun.Services.Interop;

/// <summary>An owned file descriptor, closed exactly once.</summary>
internal sealed class FileDescriptor : SafeHandleMinusOneIsInvalid
{
    public FileDescriptor(int fd)
        : base(ownsHandle: true)
    {
        SetHandle(fd);
    }

    /// <summary>
    /// The raw number for libc calls. Every user runs on the thread that disposes it, so the number cannot be
    /// closed and reused underneath a call.
    /// </summary>
    public int Number => (int)handle;

    protected override bool ReleaseHandle() => LibC.close((int)handle) == 0;
}
