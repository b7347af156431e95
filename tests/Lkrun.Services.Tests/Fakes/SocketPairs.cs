using System.Net.Sockets;
using Lkrun.Services.Interop;

namespace Lkrun.Services.Tests.Fakes;

/// <summary>Unix stream sockets made below .NET: pairs standing in for descriptors a device or hypervisor hands over, and stale socket files.</summary>
internal static class SocketPairs
{
    /// <summary>A connected pair of blocking stream sockets.</summary>
    public static (FileDescriptor First, FileDescriptor Second) Create() => UnixSocket.Pair(nonBlocking: false);

    /// <summary>A .NET socket that takes over <paramref name="descriptor"/> (and closes it when disposed).</summary>
    public static Socket AsSocket(FileDescriptor descriptor)
    {
        var handle = new SafeSocketHandle(descriptor.DangerousGetHandle(), ownsHandle: true);
        descriptor.SetHandleAsInvalid();
        return new Socket(handle);
    }

    /// <summary>
    /// Leaves a socket file at <paramref name="path"/> that nobody listens on, as a program that died does (.NET
    /// removes the file when a socket it bound is closed).
    /// </summary>
    public static void LeaveStaleSocket(string path) => UnixSocket.Listen(path, UnixSocket.OwnerOnlyMode).Dispose();
}
