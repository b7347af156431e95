using System.Buffers.Binary;
using Lkrun.Services.Interop;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.VhostUser;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// A front-end's vhost-user messages, with attached descriptors (eventfds, or the guest RAM's memfd), through a real
/// socket into the endpoint and the dispatcher, as the server runs them; then every ring the dispatcher started is
/// walked over the memory it mapped. What must hold: only <see cref="VhostUserProtocolException"/> or a
/// <see cref="SystemCallException"/> (which the server answers by disconnecting) and
/// <see cref="VirtqueueException"/> from a ring; replies only to requests that ask for one; no access outside the
/// memory the front-end shared (a page beyond the memfd's end would crash the run).
/// <para>
/// Input: a 2-byte length and that many bytes of guest RAM (at guest address 0), then messages: a descriptor byte
/// (bits 0-1 how many, bit 2 the RAM's memfd rather than eventfds), the 12-byte header, and the body its size says.
/// </para>
/// </summary>
internal sealed class VhostUserTarget : IFuzzTarget
{
    private const int RamSize = 0x10000;
    private const ushort RingSize = 8;
    private const ulong RingBase = 0x1000;

    private readonly MemfdGuestMemory _ram = new(RamSize);

    public IEnumerable<byte[]> Seeds()
    {
        var ram = new byte[0x2000];
        var driver = new FakeVirtqueueDriver(new ArrayBytes(ram), RingBase, RingSize);
        driver.Post(new DriverBuffer(0x1800, 44, false), new DriverBuffer(0x1900, 64, true));
        var layout = driver.Layout;
        var address = new byte[VringAddress.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(address.AsSpan(8), layout.DescriptorTable);
        BinaryPrimitives.WriteUInt64LittleEndian(address.AsSpan(16), layout.UsedRing);
        BinaryPrimitives.WriteUInt64LittleEndian(address.AsSpan(24), layout.AvailableRing);
        var table = new byte[8 + MemoryRegionDescription.Length];
        table[0] = 1;
        BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(16), RamSize);
        BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(24), FakeGuestMemory.UserOffset);
        var features = VirtioFeatures.Version1 | VirtioFeatures.RingEventIndex | VirtioFeatures.VhostUserProtocolFeatures;
        byte[] setup =
        [
            .. Message(VhostUserRequest.GetFeatures, []),
            .. Message(VhostUserRequest.GetProtocolFeatures, []),
            .. Message(VhostUserRequest.SetProtocolFeatures, U64(0x3)),
            .. Message(VhostUserRequest.SetOwner, []),
            .. Message(VhostUserRequest.SetFeatures, U64(features)),
            .. Message(VhostUserRequest.SetMemTable, table, descriptors: 1 | 4),
            .. Message(VhostUserRequest.SetVringNum, [0, 0, 0, 0, (byte)RingSize, 0, 0, 0]),
            .. Message(VhostUserRequest.SetVringBase, new byte[8]),
            .. Message(VhostUserRequest.SetVringAddr, address),
            .. Message(VhostUserRequest.SetVringCall, new byte[8], descriptors: 1),
            .. Message(VhostUserRequest.SetVringKick, new byte[8], descriptors: 1),
            .. Message(VhostUserRequest.SetVringEnable, [0, 0, 0, 0, 1, 0, 0, 0], needReply: true),
        ];
        yield return [(byte)ram.Length, (byte)(ram.Length >> 8), .. ram, .. setup];
        yield return [0, 0, .. setup, .. Message(VhostUserRequest.GetVringBase, new byte[8]), .. Message(VhostUserRequest.ResetOwner, [])];
        yield return [0, 0, .. Message(VhostUserRequest.GetConfig, [0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), .. Message(VhostUserRequest.GetQueueNum, [])];
    }

    private static byte[] U64(ulong value) => BitConverter.GetBytes(value);

    private static byte[] Message(VhostUserRequest request, byte[] body, byte descriptors = 0, bool needReply = false)
    {
        var bytes = new byte[1 + VhostUserHeader.Length + body.Length];
        bytes[0] = descriptors;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(1), (uint)request);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(5), VhostUserHeader.Version | (needReply ? VhostUserHeader.NeedReplyFlag : 0));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(9), (uint)body.Length);
        body.CopyTo(bytes, 1 + VhostUserHeader.Length);
        return bytes;
    }

    private sealed class ArrayBytes(byte[] bytes) : IGuestBytes
    {
        public Span<byte> Bytes(ulong guestAddress, int length) => bytes.AsSpan((int)guestAddress, length);
    }

    private sealed class Backend : IVhostUserBackend
    {
        public SplitVirtqueue?[] Queues { get; } = new SplitVirtqueue?[2];

        public int QueueCount => 2;

        public ulong Features => VirtioFeatures.Version1 | VirtioFeatures.RingEventIndex | VirtioFeatures.RingIndirectDescriptors;

        public bool TryReadConfig(uint offset, Span<byte> destination)
        {
            if (offset + (ulong)destination.Length > 8)
            {
                return false;
            }
            destination.Fill(0x5a);
            return true;
        }

        public void SetFeatures(ulong features)
        {
        }

        public void QueueReady(int index, SplitVirtqueue queue) => Queues[index] = queue;

        public void QueueStopping(int index) => Queues[index] = null;

        public void QueueKicked(int index)
        {
        }

        public void Reset() => Array.Clear(Queues);
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length < 2 || input.Length > 64 * 1024)
        {
            return;
        }
        var ramBytes = Math.Min(BinaryPrimitives.ReadUInt16LittleEndian(input), input.Length - 2);
        _ram.Bytes(0, RamSize).Clear();
        input.Slice(2, ramBytes).CopyTo(_ram.Bytes(0, RamSize));
        var messages = input[(2 + ramBytes)..];

        using var loop = new EventLoop();
        var backend = new Backend();
        using var dispatcher = new VhostUserDispatcher(backend, loop);
        var (frontEnd, backEnd) = UnixSocket.Pair(nonBlocking: false);
        using var front = frontEnd;
        using var endpoint = new VhostUserEndpoint(backEnd);
        // One message at a time, as a front-end waits for each: a pile of small messages with descriptors would
        // fill the socket's buffer before the endpoint reads any. Only the last message can be cut short.
        var records = Split(messages);
        try
        {
            for (var i = 0; i < records.Count; i++)
            {
                if (!Send(front, records[i].Bytes, records[i].Descriptors))
                {
                    break;
                }
                if (i == records.Count - 1)
                {
                    LibC.shutdown(front.Number, LibC.SHUT_WR);
                }
                using var message = endpoint.Receive();
                if (message is null)
                {
                    break;
                }
                var reply = dispatcher.Handle(message);
                if (reply is not null)
                {
                    var request = message.Header.Request;
                    Check.That(message.Header.NeedsReply || request is VhostUserRequest.GetFeatures or VhostUserRequest.GetProtocolFeatures
                        or VhostUserRequest.GetQueueNum or VhostUserRequest.GetVringBase or VhostUserRequest.GetConfig, "only requests that ask for one get a reply");
                    endpoint.Reply(message.Header, reply);
                    DrainReplies(front);
                }
            }
        }
        catch (VhostUserProtocolException)
        {
        }
        catch (SystemCallException)
        {
        }
        foreach (var queue in backend.Queues)
        {
            if (queue is not null)
            {
                WalkRing(queue);
            }
        }
        dispatcher.Reset();
    }

    /// <summary>The messages of the input: each one's bytes (header and body) and its descriptor byte.</summary>
    private static List<(byte[] Bytes, byte Descriptors)> Split(ReadOnlySpan<byte> messages)
    {
        var records = new List<(byte[], byte)>();
        var offset = 0;
        while (offset + 1 + VhostUserHeader.Length <= messages.Length)
        {
            var header = messages.Slice(offset + 1, VhostUserHeader.Length);
            var size = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
            // A body over the limit is refused on its header alone, so none is sent.
            var bodyLength = size > VhostUserLimits.MaxBodySize ? 0 : (int)Math.Min(size, (uint)(messages.Length - offset - 1 - VhostUserHeader.Length));
            records.Add((messages.Slice(offset + 1, VhostUserHeader.Length + bodyLength).ToArray(), messages[offset]));
            offset += 1 + VhostUserHeader.Length + bodyLength;
        }
        return records;
    }

    /// <summary>Sends one message with the descriptors its descriptor byte asks for; false when the socket refused it.</summary>
    private bool Send(FileDescriptor front, byte[] bytes, byte descriptorByte)
    {
        var descriptors = new List<FileDescriptor>();
        try
        {
            for (var i = 0; i < (descriptorByte & 3); i++)
            {
                descriptors.Add((descriptorByte & 4) != 0 ? _ram.Duplicate() : EventFd.Create());
            }
            return UnixSocket.SendAll(front.Number, bytes, [.. descriptors.Select(d => d.Number)]) == 0;
        }
        finally
        {
            foreach (var descriptor in descriptors)
            {
                descriptor.Dispose();
            }
        }
    }

    private static void DrainReplies(FileDescriptor front)
    {
        var buffer = new byte[VhostUserHeader.Length + VhostUserLimits.MaxBodySize];
        UnixSocket.Receive(front.Number, buffer, new int[4], out _);
    }

    /// <summary>Pops what the ring offers in the mapped memory, touching every byte of every chain.</summary>
    private static void WalkRing(SplitVirtqueue queue)
    {
        for (var attempt = 0; attempt < 2 * queue.Size + 2; attempt++)
        {
            try
            {
                if (!queue.TryPop(out var chain))
                {
                    break;
                }
                chain.CopyFromReadable(0, new byte[chain.ReadableLength]);
                chain.CopyToWritable(0, new byte[chain.WritableLength]);
                queue.AddUsed(chain.Head, 0);
            }
            catch (VirtqueueException)
            {
            }
            queue.PublishUsed(notify: false);
        }
    }
}
