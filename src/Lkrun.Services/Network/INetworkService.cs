namespace Lkrun.Services.Network;

/// <summary>The network service that serves a VM's interface while it runs: its own NAT network, or its link to a shared one.</summary>
public interface INetworkService : IAsyncDisposable
{
    /// <summary>Completes once the service has stopped after disposal; faults with a one-line <see cref="NetworkException"/> when it failed by itself.</summary>
    Task Completion { get; }
}
