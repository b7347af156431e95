using Lkrun.Engines.Vz.Runtime;
using Lkrun.Services.Vsock;

namespace Lkrun.Engines.Vz.Machine;

/// <summary>
/// The VM's <c>VZVirtioSocketDevice</c> (guest CID 3) as lkrun's fd vsock transport uses it. Every call returns
/// at once and runs on the VM's queue, as the framework requires; answers come back on that queue. A connection
/// the framework hands over (<c>VZVirtioSocketConnection</c>, +0) is retained for as long as its stream is in
/// use, since it owns the descriptor, and is closed and released on the queue when the stream is disposed.
/// <para>
/// <c>connectToPort:completionHandler:</c> "does nothing if the guest does not listen" (VZVirtioSocketDevice.h),
/// so a connect may never answer; the transport gives up after its own timeout and disposes a stream that comes
/// later. Guest connections to the host arrive through a <c>VZVirtioSocketListener</c> per port whose delegate
/// (weak in the framework, so held here) hands each connection to the transport.
/// </para>
/// </summary>
public sealed class VzSocketDevice : IGuestSocketDevice
{
    private readonly Foundation _foundation;
    private readonly IObjCRuntime _runtime;
    private readonly DispatchQueue _queue;
    private readonly Action<string> _notice;
    private readonly Func<bool> _isRunning;
    private readonly object _gate = new();
    private readonly Dictionary<uint, (ObjCId Listener, ObjCId Delegate)> _listeners = [];
    private readonly HashSet<Stream> _streams = [];
    private ObjCId _device;
    private bool _closed;

    /// <summary>
    /// Takes over <paramref name="device"/>, a +1 reference to the VM's socket device. <paramref name="isRunning"/>,
    /// asked on the queue, says whether the VM runs: a connect is only sent to a running VM.
    /// </summary>
    internal VzSocketDevice(Foundation foundation, DispatchQueue queue, ObjCId device, Func<bool> isRunning, Action<string> notice)
    {
        _foundation = foundation;
        _runtime = foundation.Runtime;
        _queue = queue;
        _device = device;
        _isRunning = isRunning;
        _notice = notice;
    }

    public void Connect(uint port, GuestConnectCompletion completed)
    {
        var dispatched = TryDispatch(() =>
        {
            if (_device.IsNil)
            {
                completed(null, Gone());
                return;
            }
            if (!_isRunning())
            {
                completed(null, new IOException($"vsock: guest port {port}: the VM is not running"));
                return;
            }
            var block = _runtime.CreateConnectionBlock((connection, error) => OnConnected(port, connection, error, completed));
            try
            {
                _runtime.SendUInt32BlockReturnsVoid(_device, _foundation.Selector("connectToPort:completionHandler:"), port, block);
            }
            finally
            {
                _runtime.ReleaseBlock(block);
            }
        });
        if (!dispatched)
        {
            completed(null, Gone());
        }
    }

    public void Listen(uint port, GuestConnectionHandler accepted) => TryDispatch(() =>
    {
        if (_device.IsNil || _listeners.ContainsKey(port))
        {
            return;
        }
        var listener = _runtime.SendReturnsObject(_foundation.Class("VZVirtioSocketListener"), _foundation.Selector("alloc"));
        listener = _runtime.SendReturnsObject(listener, _foundation.Selector("init"));
        var listenerDelegate = _runtime.CreateSocketListenerDelegate(new Acceptor(this, port, accepted));
        _runtime.SendObjectReturnsVoid(listener, _foundation.Selector("setDelegate:"), listenerDelegate);
        _runtime.SendObjectUInt32ReturnsVoid(_device, _foundation.Selector("setSocketListener:forPort:"), listener, port);
        _listeners[port] = (listener, listenerDelegate);
    });

    public void StopListening(uint port) => TryDispatch(() =>
    {
        if (!_device.IsNil && _listeners.Remove(port, out var entry))
        {
            RemoveListener(port, entry);
        }
    });

    private static ObjectDisposedException Gone() => new("the VM's vsock device is gone");

    /// <summary>
    /// Queues <paramref name="work"/> unless the device is closed. Checked and queued under the gate that
    /// <see cref="CloseOnQueue"/> closes, so nothing is queued after the owner may have released the queue.
    /// </summary>
    private bool TryDispatch(Action work)
    {
        lock (_gate)
        {
            if (_closed)
            {
                return false;
            }
            _runtime.DispatchAsync(_queue, work);
            return true;
        }
    }

    /// <summary>
    /// Removes every listener, closes every connection still handed out, and releases the device. Runs on the
    /// VM's queue, before the VM is released; later calls answer that the device is gone.
    /// </summary>
    internal void CloseOnQueue()
    {
        List<Stream> streams;
        lock (_gate)
        {
            _closed = true;
            streams = [.. _streams];
            _streams.Clear();
        }
        foreach (var (port, entry) in _listeners)
        {
            RemoveListener(port, entry);
        }
        _listeners.Clear();
        foreach (var stream in streams)
        {
            stream.CloseConnection();
        }
        _foundation.Release(_device);
        _device = ObjCId.Nil;
    }

    private void RemoveListener(uint port, (ObjCId Listener, ObjCId Delegate) entry)
    {
        _runtime.SendUInt32ReturnsVoid(_device, _foundation.Selector("removeSocketListenerForPort:"), port);
        _foundation.Release(entry.Listener);
        _runtime.ReleaseCallbackObject(entry.Delegate);
    }

    /// <summary>The connect answer, on the queue: a +0 connection to keep, or the framework's error.</summary>
    private void OnConnected(uint port, ObjCId connection, ObjCId error, GuestConnectCompletion completed)
    {
        if (connection.IsNil || !error.IsNil)
        {
            completed(null, new IOException($"vsock: guest port {port}: {_foundation.Describe(error)}"));
            return;
        }
        var stream = Adopt(connection);
        if (stream is null)
        {
            completed(null, Gone());
            return;
        }
        completed(stream, null);
    }

    /// <summary>Retains a connection the framework passed (+0) and wraps it; null once the device is closed.</summary>
    private Stream? Adopt(ObjCId connection)
    {
        lock (_gate)
        {
            if (_closed)
            {
                return null;
            }
            var retained = _foundation.Retain(connection);
            var stream = new Stream(this, retained, _runtime.SendReturnsInt32(retained, _foundation.Selector("fileDescriptor")));
            _streams.Add(stream);
            return stream;
        }
    }

    /// <summary>Called on the queue by the stream that ends or by <see cref="CloseOnQueue"/>.</summary>
    private void Forget(Stream stream)
    {
        lock (_gate)
        {
            _streams.Remove(stream);
        }
    }

    /// <summary>The listener delegate's target for one port: hands each guest connection to the transport.</summary>
    private sealed class Acceptor(VzSocketDevice device, uint port, GuestConnectionHandler accepted) : ISocketListenerDelegate
    {
        public bool ShouldAcceptNewConnection(ObjCId connection)
        {
            var stream = device.Adopt(connection);
            if (stream is null)
            {
                return false;
            }
            try
            {
                return accepted(stream);
            }
            catch (Exception e)
            {
                device._notice($"vsock: a guest connection to host port {port} failed: {e.Message}");
                stream.Dispose();
                return false;
            }
        }
    }

    /// <summary>A connection lkrun holds (+1); disposing it closes and releases it on the queue, without waiting.</summary>
    private sealed class Stream(VzSocketDevice device, ObjCId connection, int descriptor) : IGuestStream
    {
        private int _ended;

        public int FileDescriptor { get; } = descriptor;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _ended, 1) != 0)
            {
                return;
            }
            device.TryDispatch(() =>
            {
                // CloseOnQueue may have closed it first.
                lock (device._gate)
                {
                    if (!device._streams.Contains(this))
                    {
                        return;
                    }
                }
                CloseConnection();
            });
        }

        /// <summary>On the queue: <c>[connection close]</c> (which closes the descriptor), then the reference.</summary>
        public void CloseConnection()
        {
            device.Forget(this);
            device._runtime.SendReturnsVoid(connection, device._foundation.Selector("close"));
            device._foundation.Release(connection);
        }
    }
}
