// PROVISIONAL: the fd vsock transport's contracts as branch `vsock` (issue 9, item 4) defines them in
// src/Lkrun.Services/Vsock/Vsock.cs, not yet on main. Delete this file when that branch is merged; the types below
// keep its names and shapes so that VzSocketDevice compiles against the real ones unchanged.
namespace Lkrun.Services.Vsock;

/// <summary>One vsock stream a hypervisor hands over: a connected descriptor and the object that owns it.</summary>
public interface IGuestStream : IDisposable
{
    /// <summary>The connected descriptor; it stays this object's, and the transport works on a duplicate.</summary>
    int FileDescriptor { get; }
}

/// <summary>The answer to <see cref="IGuestSocketDevice.Connect"/>: the stream or the error, exactly one non-null.</summary>
public delegate void GuestConnectCompletion(IGuestStream? stream, Exception? error);

/// <summary>A guest connected to a port listened on: true takes the stream, false refuses it; the transport owns it either way.</summary>
public delegate bool GuestConnectionHandler(IGuestStream stream);

/// <summary>The hypervisor's virtio socket device as the fd vsock transport uses it; every method returns at once.</summary>
public interface IGuestSocketDevice
{
    /// <summary>Asks the guest for a stream to its <paramref name="port"/>; <paramref name="completed"/> runs at most once, maybe never.</summary>
    void Connect(uint port, GuestConnectCompletion completed);

    /// <summary>Accepts guest connections to host <paramref name="port"/> from now on, handing each to <paramref name="accepted"/>.</summary>
    void Listen(uint port, GuestConnectionHandler accepted);

    /// <summary>Refuses guest connections to host <paramref name="port"/> from now on.</summary>
    void StopListening(uint port);
}
