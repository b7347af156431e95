using FsCheck.Xunit;
using Lkrun.Services.Tests.Fakes;
using Lkrun.Services.VhostUser;
using Lkrun.Services.Vsock;

namespace Lkrun.Services.Tests.Vsock;

public class VsockPacketTests : IDisposable
{
    private const ulong RingBase = 0x1_0000;
    private const ulong Data = 0x2_0000;

    private readonly FakeGuestMemory _memory = new((RingBase, 0x2000), (Data, 0x2_0000));
    private readonly FakeVirtqueueDriver _driver;
    private readonly SplitVirtqueue _queue;

    public VsockPacketTests()
    {
        _driver = new FakeVirtqueueDriver(_memory, RingBase, 16);
        _queue = _driver.CreateDeviceQueue(_memory.Memory, VirtioFeatures.Version1);
    }

    public void Dispose() => _memory.Dispose();

    private DescriptorChain Chain(VsockHeader header, int headerBytes = VsockLimits.HeaderSize, int payloadBytes = 0)
    {
        header.Write(_memory.Bytes(Data, VsockLimits.HeaderSize));
        if (payloadBytes > 0)
        {
            _driver.Post(new DriverBuffer(Data, (uint)headerBytes, false), new DriverBuffer(Data + 0x100, (uint)payloadBytes, false));
        }
        else
        {
            _driver.Post(new DriverBuffer(Data, (uint)headerBytes, false));
        }

        Assert.True(_queue.TryPop(out var chain));
        return chain;
    }

    [Fact]
    public void Valid_header_round_trips()
    {
        var sent = FakeVsockGuest.Header(VsockOp.ReadWrite, 1234, 5000, length: 10, bufferAllocation: 4096, forwardCount: 77);

        var parsed = VsockPacket.ParseFromGuest(Chain(sent, payloadBytes: 10), FakeVsockGuest.Cid);

        Assert.Equal(sent, parsed);
    }

    [Fact]
    public void Header_split_across_descriptors_is_read_whole()
    {
        var sent = FakeVsockGuest.Header(VsockOp.Request, 1, 2);
        sent.Write(_memory.Bytes(Data, VsockLimits.HeaderSize));
        _driver.Post(new DriverBuffer(Data, 20, false), new DriverBuffer(Data + 20, 24, false));
        Assert.True(_queue.TryPop(out var chain));

        Assert.Equal(sent, VsockPacket.ParseFromGuest(chain, FakeVsockGuest.Cid));
    }

    [Fact]
    public void Packets_breaking_the_rules_are_typed()
    {
        var header = FakeVsockGuest.Header(VsockOp.ReadWrite, 1, 2, length: 100);
        Assert.Equal(VsockPacketError.BadLength, Assert.Throws<VsockPacketException>(() => VsockPacket.ParseFromGuest(Chain(header, payloadBytes: 99), 3)).Error);

        header.Length = VsockLimits.MaxPacketPayload + 1;
        Assert.Equal(VsockPacketError.BadLength, Assert.Throws<VsockPacketException>(() => VsockPacket.ParseFromGuest(Chain(header, payloadBytes: 0x1_0100), 3)).Error);

        Assert.Equal(VsockPacketError.Truncated, Assert.Throws<VsockPacketException>(() => VsockPacket.ParseFromGuest(Chain(header, headerBytes: 43), 3)).Error);

        var spoofed = FakeVsockGuest.Header(VsockOp.Request, 1, 2);
        spoofed.SourceCid = 7;
        Assert.Equal(VsockPacketError.WrongSource, Assert.Throws<VsockPacketException>(() => VsockPacket.ParseFromGuest(Chain(spoofed), 3)).Error);

        var elsewhere = FakeVsockGuest.Header(VsockOp.Request, 1, 2);
        elsewhere.DestinationCid = 5;
        Assert.Equal(VsockPacketError.WrongDestination, Assert.Throws<VsockPacketException>(() => VsockPacket.ParseFromGuest(Chain(elsewhere), 3)).Error);

        var seqpacket = FakeVsockGuest.Header(VsockOp.Request, 1, 2);
        seqpacket.Type = 2;
        Assert.Equal(VsockPacketError.UnsupportedType, Assert.Throws<VsockPacketException>(() => VsockPacket.ParseFromGuest(Chain(seqpacket), 3)).Error);

        var unknown = FakeVsockGuest.Header((VsockOp)8, 1, 2);
        Assert.Equal(VsockPacketError.UnknownOp, Assert.Throws<VsockPacketException>(() => VsockPacket.ParseFromGuest(Chain(unknown), 3)).Error);

        var requestWithData = FakeVsockGuest.Header(VsockOp.Request, 1, 2, length: 4);
        Assert.Equal(VsockPacketError.BadLength, Assert.Throws<VsockPacketException>(() => VsockPacket.ParseFromGuest(Chain(requestWithData, payloadBytes: 4), 3)).Error);
    }

    [Property(MaxTest = 500)]
    public void Random_headers_parse_or_fail_with_a_typed_error(byte[] bytes, ushort headerBytes, ushort payloadBytes)
    {
        var header = new byte[VsockLimits.HeaderSize];
        bytes.AsSpan(0, Math.Min(bytes.Length, header.Length)).CopyTo(header);
        // Make some of them plausible so that the later checks run too.
        if (bytes.Length % 2 == 0)
        {
            var plausible = VsockHeader.Read(header);
            plausible.SourceCid = FakeVsockGuest.Cid;
            plausible.DestinationCid = VsockLimits.HostCid;
            plausible.Type = VsockLimits.StreamType;
            plausible.Write(header);
        }

        header.CopyTo(_memory.Bytes(Data, VsockLimits.HeaderSize));
        _driver.Post(new DriverBuffer(Data, (uint)(1 + headerBytes % VsockLimits.HeaderSize * 2), false), new DriverBuffer(Data + 0x100, (uint)(payloadBytes % 0x1_0000), false));
        Assert.True(_queue.TryPop(out var chain));
        _queue.AddUsed(chain.Head, 0);
        _queue.PublishUsed();
        _driver.TryTakeUsed(out _, out _);

        try
        {
            var parsed = VsockPacket.ParseFromGuest(chain, FakeVsockGuest.Cid);
            Assert.True(parsed.Length <= VsockLimits.MaxPacketPayload);
            Assert.True(parsed.Length <= chain.ReadableLength - VsockLimits.HeaderSize);
        }
        catch (VsockPacketException)
        {
        }
    }
}
