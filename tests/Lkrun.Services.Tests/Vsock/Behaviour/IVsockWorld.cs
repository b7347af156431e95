using System.Net.Sockets;

namespace Lkrun.Tests.VsockBehaviour;

/// <summary>
/// Where <see cref="VsockBehaviourTests{TWorld}"/> runs: lkrun's vsock front end over one transport, and a guest
/// that serves the test guest tool's services on <see cref="GuestPorts"/> and runs its clients on request. One per
/// transport: a booted QEMU guest behind the vhost-user device (integration tests), and the stream transport over
/// a fake hypervisor socket device (unit tests).
/// </summary>
public interface IVsockWorld
{
    /// <summary>A host program's connection to <c>guest.PPPPPPPP</c>.</summary>
    Socket ConnectGuestPort(uint port);

    /// <summary>A host program's listener at <c>00000002.PPPPPPPP</c>, returned once a guest can reach it.</summary>
    Task<Socket> ListenHostPortAsync(uint port);

    /// <summary>
    /// The guest connects to host port <paramref name="hostPort"/>, sends <paramref name="bytes"/> pattern bytes,
    /// half-closes and reads the reply to the end (the guest tool's vsock-send); the output holds the reply.
    /// </summary>
    Task<GuestRun> GuestSendsAsync(uint hostPort, int bytes);

    /// <summary>
    /// The guest connects to host port <paramref name="hostPort"/>, asks for <paramref name="bytes"/> bytes with a
    /// line, and checks the pattern it gets (vsock-recv); the output says "received N bytes" when they were right.
    /// </summary>
    Task<GuestRun> GuestReceivesAsync(uint hostPort, int bytes);

    /// <summary>Descriptors open in the process that runs the transport.</summary>
    int Descriptors { get; }

    /// <summary><see cref="Descriptors"/> once everything was up and no vsock connection was open.</summary>
    int IdleDescriptors { get; }

    /// <summary>Resident memory of the process that runs the transport, when it is one of its own; null otherwise.</summary>
    long? ResidentBytes { get; }

    /// <summary>What lkrun reported while the world ran (its console, or the front end's log).</summary>
    string Reports { get; }
}

/// <summary>How a guest client ended: refused (reset by the host), or with its output.</summary>
public sealed record GuestRun(bool Refused, string Output);

/// <summary>The guest ports every world serves, and a few host ports for guest clients.</summary>
public static class GuestPorts
{
    public const uint Echo = 5000;
    public const uint Discard = 5001;
    public const uint Source = 5002;

    /// <summary>A guest port nothing listens on inside the guest.</summary>
    public const uint Silent = 5009;

    public const uint HostReceiving = 6000;
    public const uint HostSending = 6001;

    /// <summary>A host port nobody listens on.</summary>
    public const uint HostSilent = 6009;
}
