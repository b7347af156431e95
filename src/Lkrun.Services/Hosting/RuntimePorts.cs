using Lkrun.Services.Network;
using Lkrun.Services.Network.Publishing;
using Lkrun.Spec;

namespace Lkrun.Services.Hosting;

/// <summary>
/// The ports a running VM publishes: those of <c>-publish</c>, and those added or removed while it runs (through
/// the control API), with the same checks as <c>-publish</c>. Changes are made one at a time.
/// </summary>
public sealed class RuntimePorts
{
    private readonly INetworkService? _network;
    private readonly NetworkMode _mode;
    private readonly SemaphoreSlim _changing = new(1, 1);
    private IReadOnlyList<PublishedPort> _ports;

    internal RuntimePorts(INetworkService? network, NetworkMode mode, IReadOnlyList<PublishedPort> ports)
    {
        _network = network;
        _mode = mode;
        _ports = ports;
    }

    public IReadOnlyList<PublishedPort> Ports => Volatile.Read(ref _ports);

    /// <summary>
    /// Publishes a port given as <c>-publish</c> takes it (<c>[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]</c>). A
    /// malformed spec, a port published already, or a host port in use is a <see cref="SpecException"/> or
    /// <see cref="NetworkException"/> with the flag's message.
    /// </summary>
    public async Task<PublishedPort> PublishAsync(string flagValue, CancellationToken cancellation)
    {
        var port = FlagSyntax.ParsePublish(flagValue);
        await _changing.WaitAsync(cancellation);
        try
        {
            if (_network is null)
            {
                throw SpecException.Usage($"-publish {port}: {VmSpecValidator.WhyNoPublishing(_mode) ?? "the VM has no network of lkrun's"}");
            }
            NatNetwork.CheckPublishable(port);
            VmSpecValidator.ValidatePublishedPorts([.. _ports, port]);
            if (PortPreflight.WhyNotBindable(port) is { } why)
            {
                throw NetworkException.Usage($"-publish {port}: {why}");
            }
            await _network.ChangeHostForwardAsync(port, add: true);
            Volatile.Write(ref _ports, [.. _ports, port]);
            return port;
        }
        finally
        {
            _changing.Release();
        }
    }

    /// <summary>Stops publishing <paramref name="port"/>, one of <see cref="Ports"/>.</summary>
    public async Task UnpublishAsync(PublishedPort port, CancellationToken cancellation)
    {
        await _changing.WaitAsync(cancellation);
        try
        {
            if (_network is null || !_ports.Contains(port))
            {
                throw NetworkException.Usage($"{port} is not published");
            }
            await _network.ChangeHostForwardAsync(port, add: false);
            Volatile.Write(ref _ports, [.. _ports.Where(published => published != port)]);
        }
        finally
        {
            _changing.Release();
        }
    }
}
