using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.VhostUser;
using Lkrun.Services.Vsock;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// A packet on the guest's vsock transmit queue, cut across up to four readable descriptors (and perhaps a
/// writable one) in guarded guest memory: the boundary check fails only with <see cref="VsockPacketException"/>,
/// says "truncated" exactly when no header fits, and a header it accepts is the chain's first 44 bytes, promises
/// only payload the chain holds, and writes back the same.
/// <para>Input: byte 0 chooses the cuts (bits 0-1: descriptors - 1; bit 2: a writable one after them); the rest is the packet.</para>
/// </summary>
internal sealed class VsockPacketTarget : IFuzzTarget
{
    private const ulong RingBase = 0x1_0000;
    private const ulong Data = 0x2_0000;
    private const int DataBytes = 0x2_0000;
    private const ushort Size = 8;
    private const ulong GuestCid = FakeVsockGuest.Cid;

    private readonly FakeGuestMemory _memory = new((RingBase, 0x1000), (Data, DataBytes));

    public IEnumerable<byte[]> Seeds()
    {
        yield return Packet(0, VsockOp.Request, []);
        yield return Packet(1, VsockOp.ReadWrite, "hello, host"u8.ToArray());
        yield return Packet(6, VsockOp.ReadWrite, new byte[300]);
        yield return Packet(0, VsockOp.Shutdown, [], flags: 3);
        yield return Packet(0, VsockOp.CreditUpdate, []);
    }

    private static byte[] Packet(byte cuts, VsockOp op, byte[] payload, uint flags = 0)
    {
        var header = FakeVsockGuest.Header(op, 5000, 1u << 30, (uint)payload.Length, flags);
        var bytes = new byte[1 + VsockLimits.HeaderSize + payload.Length];
        bytes[0] = cuts;
        header.Write(bytes.AsSpan(1));
        payload.CopyTo(bytes, 1 + VsockLimits.HeaderSize);
        return bytes;
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty || input.Length > DataBytes / 2)
        {
            return;
        }
        var packet = input[1..];
        var pieces = 1 + (input[0] & 3);
        var chopper = new Wire.Chopper(packet);
        var buffers = new List<DriverBuffer>();
        var address = Data;
        var offset = 0;
        for (var i = 0; i < pieces; i++)
        {
            var length = i == pieces - 1 ? packet.Length - offset : chopper.Next(packet.Length - offset + 1);
            if (length == 0)
            {
                continue;
            }
            packet.Slice(offset, length).CopyTo(_memory.Bytes(address, length));
            buffers.Add(new DriverBuffer(address, (uint)length, false));
            offset += length;
            // A gap between the pieces, so that a read across them could not pass by accident.
            address = (address + (ulong)length + 64) & ~7UL;
        }
        if ((input[0] & 4) != 0)
        {
            buffers.Add(new DriverBuffer(Data + DataBytes - 4096, 4096, true));
        }
        if (buffers.Count == 0)
        {
            buffers.Add(new DriverBuffer(Data + DataBytes - 4096, 4096, true));
        }

        _memory.Bytes(RingBase, 0x1000).Clear();
        var driver = new FakeVirtqueueDriver(_memory, RingBase, Size);
        driver.Post([.. buffers]);
        var queue = driver.CreateDeviceQueue(_memory.Memory, FakeVsockGuest.Features);
        Check.That(queue.TryPop(out var chain), "the posted chain pops");
        Check.That(chain.ReadableLength == packet.Length, "the chain holds the packet");
        try
        {
            var header = VsockPacket.ParseFromGuest(chain, GuestCid);
            Check.That(packet.Length >= VsockLimits.HeaderSize, "a header is read only from a chain that holds one");
            var expected = VsockHeader.Read(packet);
            Check.That(header.Equals(expected), "the header is the chain's first 44 bytes");
            Check.That(header.SourceCid == GuestCid && header.DestinationCid == VsockLimits.HostCid && header.Type == VsockLimits.StreamType, "addresses and type are checked");
            Check.That(header.Length <= VsockLimits.MaxPacketPayload && header.Length <= packet.Length - VsockLimits.HeaderSize, "the payload the header promises is in the chain");
            Check.That(header.Op == VsockOp.ReadWrite || header.Length == 0, "only data packets carry payload");
            var payload = new byte[header.Length];
            Check.That(chain.CopyFromReadable(VsockLimits.HeaderSize, payload) == payload.Length, "the payload can be read");
            Check.That(packet.Slice(VsockLimits.HeaderSize, payload.Length).SequenceEqual(payload), "the payload is the bytes after the header");
            Span<byte> written = stackalloc byte[VsockLimits.HeaderSize];
            header.Write(written);
            Check.That(written.SequenceEqual(packet[..VsockLimits.HeaderSize]), "the header writes back the same bytes");
        }
        catch (VsockPacketException e)
        {
            Check.That((e.Error == VsockPacketError.Truncated) == (packet.Length < VsockLimits.HeaderSize), "truncated exactly when no header fits");
            Check.That(e.Header is null == (e.Error == VsockPacketError.Truncated), "the header comes with every error but truncation");
        }
    }
}
