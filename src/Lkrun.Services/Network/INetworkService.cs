namespace Lkrun.Services.Network;

/// <summary>The network service that serves a VM's interface while it runs: its own NAT network, or its link to a shared one.</summary>
public interface INetworkService : IAsyncDisposable
{
    /// <summary>Completes once the service has stopped after disposal; faults with a one-line <see cref="NetworkException"/> when it failed by itself.</summary>
    Task Completion { get; }

    /// <summary>
    /// Publishes <paramref name="port"/> for the VM while it runs (or, with <paramref name="add"/> false, stops
    /// publishing it); a port that cannot be published fails with a one-line <see cref="NetworkException"/>.
    /// </summary>
    Task ChangeHostForwardAsync(Lkrun.Spec.PublishedPort port, bool add);
}
