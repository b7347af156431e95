using System.Net.Sockets;
using Lkrun.Services.Interop;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// Datagrams from the device into the datagram link over a real socket pair: exactly the datagrams of a frame's
/// possible lengths come through, in order and unchanged, every other one is counted as dropped, and frames sent
/// back to the guest arrive whole. The input is records of a 3-byte big-endian length (17 bits) and that many bytes.
/// </summary>
internal sealed class FrameDatagramTarget : IFuzzTarget, IFrameSink
{
    private const int MaxDatagrams = 64;
    private const int MaxTurns = 10_000;

    private readonly List<byte[]> _delivered = [];
    private DatagramFrameLink? _link;
    private Socket? _device;
    private readonly PollSet _poll = new();


    public IEnumerable<byte[]> Seeds()
    {
        var frames = new FramesTarget().Seeds().ToList();
        yield return [.. frames.SelectMany(Record)];
        yield return [.. Record(new byte[13]), .. Record(frames[0]), .. Record(new byte[FrameLimits.MaxFrameLength + 1]), .. Record(frames[1])];
    }

    private static byte[] Record(byte[] datagram) => [(byte)(datagram.Length >> 16), (byte)(datagram.Length >> 8), (byte)datagram.Length, .. datagram];

    public void Deliver(ReadOnlySpan<byte> frame) => _delivered.Add(frame.ToArray());

    public void Run(ReadOnlySpan<byte> input)
    {
        if (_link is null)
        {
            var (network, device) = DatagramSocketPair.Create();
            _link = DatagramFrameLink.Adopt(network);
            _device = new Socket(device) { Blocking = false };
        }
        var datagrams = new List<byte[]>();
        for (var offset = 0; offset + 3 <= input.Length && datagrams.Count < MaxDatagrams;)
        {
            var length = Math.Min(((input[offset] & 1) << 16) | (input[offset + 1] << 8) | input[offset + 2], input.Length - offset - 3);
            datagrams.Add(input.Slice(offset + 3, length).ToArray());
            offset += 3 + length;
        }
        var expected = datagrams.Where(d => d.Length is >= EthernetFrame.HeaderLength and <= FrameLimits.MaxFrameLength).ToList();
        var droppedBefore = _link.DroppedFrames;
        _delivered.Clear();
        var next = 0;
        for (var turn = 0; _delivered.Count + (_link.DroppedFrames - droppedBefore) < datagrams.Count; turn++)
        {
            Check.That(turn < MaxTurns, "every datagram is taken in or dropped");
            // Send until the socket is full (its receive queue is short), then let the link take them in.
            while (next < datagrams.Count && TrySend(datagrams[next]))
            {
                next++;
            }
            _poll.Clear();
            _link.AddTo(_poll);
            _poll.Wait(10);
            _link.Serve(_poll, this);
        }
        Check.That(_delivered.Count == expected.Count && _delivered.Zip(expected).All(pair => pair.First.AsSpan().SequenceEqual(pair.Second)), "frames come through in order, unchanged");
        Check.That(_link.DroppedFrames - droppedBefore == datagrams.Count - expected.Count, "every other datagram is counted as dropped");

        // And back to the device: each frame arrives as one datagram.
        var buffer = new byte[FrameLimits.MaxFrameLength + 1];
        var received = 0;
        var sent = 0;
        for (var turn = 0; received < expected.Count; turn++)
        {
            Check.That(turn < MaxTurns, "frames to the device arrive");
            if (sent < expected.Count)
            {
                _link.Deliver(expected[sent++]);
            }
            _link.Flush();
            while (received < expected.Count && TryReceive(buffer, out var length))
            {
                Check.That(buffer.AsSpan(0, length).SequenceEqual(expected[received]), "a frame for the device arrives whole");
                received++;
            }
        }
    }

    private bool TrySend(byte[] datagram)
    {
        try
        {
            Check.That(_device!.Send(datagram) == datagram.Length, "the device's datagram is sent whole");
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.NoBufferSpaceAvailable)
        {
            return false;
        }
    }

    private bool TryReceive(byte[] buffer, out int length)
    {
        try
        {
            length = _device!.Receive(buffer);
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
        {
            length = 0;
            return false;
        }
    }
}
