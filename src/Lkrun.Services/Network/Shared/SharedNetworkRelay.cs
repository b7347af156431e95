using System.Net;
using System.Net.Sockets;
using Lkrun.Services.Faults;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Shared.Ports;
using Lkrun.Services.Network.Shared.Vpnkit;
using Lkrun.Spec;

namespace Lkrun.Services.Network.Shared;

/// <summary>
/// A VM's link to a shared network, in its lkrun: frames from the VM's device (over the link the engine uses, as on
/// the private network) go to the network's ethernet socket after their VPNKit length, and frames from there go to
/// the device. One thread sleeps in poll(2) on both and a wake-up pipe. Should the network close the connection
/// (the service stopped), lkrun says so once and the VM runs on without a network; the relay fails, and takes the
/// VM down with it, only when its own link does.
/// </summary>
internal sealed class SharedNetworkRelay : INetworkService
{
    /// <summary>The relay's name for <see cref="FaultInjection"/>: <c>LKRUN_FAULT=network=N</c>, as for the private network.</summary>
    public const string ServiceName = NatNetwork.ServiceName;

    private const int ReadsPerTurn = 16;
    private const int FlushThreshold = 256 * 1024;

    private readonly IPAddress _guestAddress;
    private readonly string? _portSocket;
    private readonly VpnkitAttachment _attachment;
    private readonly IFrameLink _link;
    private readonly Action<string> _notice;
    private readonly Socket _service;
    private readonly FrameStreamReader _fromService = new(stream: FrameStream.Vpnkit);
    private readonly FrameQueue _toService = new(stream: FrameStream.Vpnkit);
    private readonly WakePipe _wake = new();
    private readonly PollSet _poll = new();
    private readonly long? _faultDeadline = FaultInjection.DeadlineFor(ServiceName);
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopping;
    private bool _detached;
    private int _servicePoll = -1;
    private int _disposed;

    private SharedNetworkRelay(VpnkitAttachment attachment, IFrameLink link, IPAddress guestAddress, string? portSocket, Action<string> notice)
    {
        _guestAddress = guestAddress;
        _portSocket = portSocket;
        _attachment = attachment;
        _link = link;
        _notice = notice;
        _service = attachment.Socket;
        _service.Blocking = false;
    }

    public Task Completion => _completion.Task;

    /// <summary>Opens lkrun's end of the device's link and starts relaying; the relay owns <paramref name="attachment"/> from now on.</summary>
    public static SharedNetworkRelay Start(VpnkitAttachment attachment, FrameLinkEndpoint link, IPAddress guestAddress, string? portSocket, Action<string> notice)
    {
        var relay = new SharedNetworkRelay(attachment, FrameLinks.Open(link), guestAddress, portSocket, notice);
        new Thread(relay.Run) { IsBackground = true, Name = "shared network relay" }.Start();
        return relay;
    }

    /// <summary>
    /// Asks the network's port socket, as <c>-publish</c> does at start; the network removes the port itself when
    /// this VM's link closes.
    /// </summary>
    public Task ChangeHostForwardAsync(PublishedPort port, bool add)
    {
        if (_portSocket is null)
        {
            throw NetworkException.Usage($"-publish {port}: the shared network was attached without its port socket (-networking vpnkit,ETH,PORT)");
        }
        using var ports = PortControlClient.Connect(_portSocket);
        PortRequest request = add ? new ExposeRequest(port, _guestAddress) : new UnexposeRequest(port.Protocol, port.HostAddress, port.HostPort);
        return ports.Send(request).Error is { } error ? throw NetworkException.Usage($"-publish {port}: {error}") : Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stopping = true;
        _wake.Signal();
        try
        {
            await _completion.Task;
        }
        catch (NetworkException)
        {
            // Reported through Completion.
        }
        _wake.Dispose();
    }

    private void Run()
    {
        Exception? failure = null;
        try
        {
            var toService = new ServiceSink(this);
            while (!_stopping)
            {
                _poll.Clear();
                var wake = _poll.Add(_wake.ReadFd, LibC.POLLIN);
                var timeout = _link.AddTo(_poll);
                _servicePoll = _detached ? -1 : _poll.Add((int)_service.Handle, _toService.IsEmpty ? LibC.POLLIN : (short)(LibC.POLLIN | LibC.POLLOUT));
                if (_faultDeadline is { } due)
                {
                    var untilFault = (int)Math.Clamp(due - Environment.TickCount64, 0, int.MaxValue);
                    timeout = timeout < 0 ? untilFault : Math.Min(timeout, untilFault);
                }
                if (_poll.Wait(timeout) > 0)
                {
                    if (_poll.ReturnedEvents(wake) != 0)
                    {
                        _wake.Drain();
                    }
                    _link.Serve(_poll, toService);
                    var events = _poll.ReturnedEvents(_servicePoll);
                    if ((events & (LibC.POLLIN | LibC.POLLHUP | LibC.POLLERR)) != 0)
                    {
                        ReadService();
                    }
                }
                _link.Flush();
                FlushService();
                FaultInjection.ThrowIfDue(ServiceName, _faultDeadline);
            }
        }
        catch (Exception e)
        {
            failure = NetworkException.Host($"the VM's link to the shared network stopped: {e.Message}");
        }
        finally
        {
            _link.Dispose();
            _attachment.Dispose();
            if (failure is null)
            {
                _completion.SetResult();
            }
            else
            {
                _completion.SetException(failure);
            }
        }
    }

    private void ReadService()
    {
        for (var i = 0; i < ReadsPerTurn && !_detached; i++)
        {
            var read = _service.Receive(_fromService.FreeSpace(), SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success || read == 0)
            {
                Detach(error == SocketError.Success ? "closed the VM's link" : $"broke the VM's link ({error})");
                return;
            }
            _fromService.Received(read);
            while (_fromService.TryReadFrame(out var frame))
            {
                _link.Deliver(frame);
            }
        }
    }

    private void ToService(ReadOnlySpan<byte> frame)
    {
        if (_detached)
        {
            return;
        }
        if (_toService.Pending.Length >= FlushThreshold)
        {
            FlushService();
        }
        _toService.TryQueue(frame);
    }

    private void FlushService()
    {
        while (!_detached && !_toService.IsEmpty)
        {
            var sent = _service.Send(_toService.Pending, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                return;
            }
            if (error != SocketError.Success)
            {
                Detach($"broke the VM's link ({error})");
                return;
            }
            _toService.Consumed(sent);
        }
    }

    private void Detach(string what)
    {
        _detached = true;
        _toService.Clear();
        _notice($"the shared network at {_attachment.Path} {what}: the VM is detached and has no network now");
    }

    private sealed class ServiceSink(SharedNetworkRelay relay) : IFrameSink
    {
        public void Deliver(ReadOnlySpan<byte> frame) => relay.ToService(frame);
    }
}
