using System.Net;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Lkrun.Services.Network.Links;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.Network.Shared.Vpnkit;

namespace Lkrun.Services.Tests.Network.Shared.Vpnkit;

/// <summary>
/// VPNKit's ethernet protocol both ways. The expected bytes are written out here from the protocol's description
/// (hyperkit's <c>virtio-vpnkit</c> structs, VPNKit's <c>go/pkg/vmnet</c>), not produced by the code under test.
/// </summary>
public sealed class VpnkitProtocolTests
{
    private static readonly Guid Uuid = Guid.Parse("d7e4a3c2-0b1f-4e6a-9c8d-112233445566");
    private static readonly byte[] UuidText = Encoding.ASCII.GetBytes("d7e4a3c2-0b1f-4e6a-9c8d-112233445566");

    [Fact]
    public void The_init_message_is_the_magic_the_version_22_little_endian_and_40_bytes_of_commit()
    {
        var init = VpnkitProtocol.Init();
        Assert.Equal(49, init.Length);
        Assert.Equal("VMN3T"u8.ToArray(), init[..5]);
        Assert.Equal(new byte[] { 22, 0, 0, 0 }, init[5..9]);
        Assert.True(VpnkitProtocol.TryReadInit(init, out var version));
        Assert.Equal(22u, version);
    }

    [Fact]
    public void An_init_message_from_a_peer_is_read_with_its_version()
    {
        byte[] peer = [.. "VMN3T"u8, 1, 0, 0, 0, .. Encoding.ASCII.GetBytes("0123456789012345678901234567890123456789")];
        Assert.True(VpnkitProtocol.TryReadInit(peer, out var version));
        Assert.Equal(1u, version);
    }

    [Fact]
    public void An_init_message_with_another_magic_is_refused()
    {
        byte[] http = [.. "GET / HTTP/1.1\r\n"u8, .. new byte[40]];
        var error = Assert.Throws<VpnkitProtocolException>(() => VpnkitProtocol.TryReadInit(http, out _));
        Assert.Contains("474554202f", error.Message);
    }

    [Fact]
    public void An_ethernet_command_is_type_1_the_uuid_as_text_and_four_zero_bytes()
    {
        byte[] expected = [1, .. UuidText, 0, 0, 0, 0];
        Assert.Equal(expected, VpnkitProtocol.Command(new VpnkitCommand(Uuid, null)));
        Assert.True(VpnkitProtocol.TryReadCommand(expected, out var command));
        Assert.Equal(new VpnkitCommand(Uuid, null), command);
    }

    [Fact]
    public void A_preferred_address_is_type_8_with_the_addresss_bytes_reversed()
    {
        byte[] expected = [8, .. UuidText, 5, 65, 168, 192];
        var wanted = IPAddress.Parse("192.168.65.5");
        Assert.Equal(expected, VpnkitProtocol.Command(new VpnkitCommand(Uuid, wanted)));
        Assert.True(VpnkitProtocol.TryReadCommand(expected, out var command));
        Assert.Equal(Uuid, command.Uuid);
        Assert.Equal(wanted, command.PreferredAddress);
    }

    [Fact]
    public void Upper_case_uuids_are_read_and_a_uuid_of_zero_bytes_asks_for_one()
    {
        byte[] upper = [1, .. Encoding.ASCII.GetBytes(Uuid.ToString().ToUpperInvariant()), 0, 0, 0, 0];
        Assert.True(VpnkitProtocol.TryReadCommand(upper, out var command));
        Assert.Equal(Uuid, command.Uuid);
        Assert.True(VpnkitProtocol.TryReadCommand(new byte[] { 1 }.Concat(new byte[40]).ToArray(), out var anonymous));
        Assert.Equal(Guid.Empty, anonymous.Uuid);
    }

    public static TheoryData<byte[], string> BadCommands => new()
    {
        { [6, .. new byte[40]], "command 6 (bind_ipv4) is not supported" },
        { [0, .. UuidText, 0, 0, 0, 0], "unknown command 0" },
        { [255, .. UuidText, 0, 0, 0, 0], "unknown command 255" },
        { [1, .. Encoding.ASCII.GetBytes("not-a-uuid-at-all-but-36-characters!"), 0, 0, 0, 0], "the command's UUID is not one (not-a-uuid-at-all-but-36-characters!)" },
        { [1, 0xff, .. UuidText[1..], 0, 0, 0, 0], "the command's UUID is not one (ff" },
    };

    [Theory]
    [MemberData(nameof(BadCommands))]
    public void Malformed_commands_are_refused_with_a_reason(byte[] bytes, string reason)
    {
        var error = Assert.Throws<VpnkitProtocolException>(() => VpnkitProtocol.TryReadCommand(bytes, out _));
        Assert.StartsWith(reason, error.Message);
    }

    [Fact]
    public void A_vif_response_is_type_1_mtu_largest_packet_and_mac_in_258_bytes()
    {
        var mac = MacAddress.FromBytes([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        var bytes = VpnkitProtocol.Response(new VpnkitVif(65520, 65535, mac));
        byte[] expected = [1, 0xf0, 0xff, 0xff, 0xff, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, .. new byte[247]];
        Assert.Equal(expected, bytes);
        Assert.True(VpnkitProtocol.TryReadResponse(bytes, out var response));
        Assert.Equal(new VpnkitVif(65520, 65535, mac), response);
    }

    [Fact]
    public void A_disconnect_carries_its_reason_cut_to_255_bytes()
    {
        var bytes = VpnkitProtocol.Response(new VpnkitDisconnect("no"));
        Assert.Equal([2, 2, (byte)'n', (byte)'o', .. new byte[254]], bytes);
        var longReason = new string('x', 300);
        Assert.True(VpnkitProtocol.TryReadResponse(VpnkitProtocol.Response(new VpnkitDisconnect(longReason)), out var response));
        Assert.Equal(new VpnkitDisconnect(new string('x', 255)), response);
        Assert.Throws<VpnkitProtocolException>(() => VpnkitProtocol.TryReadResponse([7, .. new byte[257]], out _));
    }

    [Fact]
    public void A_reason_is_cut_before_a_character_that_does_not_fit_whole()
    {
        var reason = new string('x', 254) + "\u00e9";
        Assert.True(VpnkitProtocol.TryReadResponse(VpnkitProtocol.Response(new VpnkitDisconnect(reason)), out var response));
        Assert.Equal(new VpnkitDisconnect(new string('x', 254)), response);
    }

    /// <summary>
    /// From the fuzzer (vpnkit, crash 0): a peer's reason that is not UTF-8 reads with replacement characters,
    /// three bytes each, so it cannot write back as the same bytes and may no longer fit whole; what is written is a
    /// cut of what was read, and writes back as itself.
    /// </summary>
    [Fact]
    public void A_reason_read_from_bytes_that_are_not_utf8_writes_back_readable()
    {
        byte[] peer = [2, 255, 0x80, .. "ddress in use"u8, .. new byte[140], 0xff, .. new byte[101]];
        Assert.True(VpnkitProtocol.TryReadResponse(peer, out var read));
        Assert.True(VpnkitProtocol.TryReadResponse(VpnkitProtocol.Response(read), out var written));
        var reason = Assert.IsType<VpnkitDisconnect>(written).Reason;
        Assert.StartsWith(reason, Assert.IsType<VpnkitDisconnect>(read).Reason, StringComparison.Ordinal);
        Assert.True(VpnkitProtocol.TryReadResponse(VpnkitProtocol.Response(written), out var again));
        Assert.Equal(written, again);
    }

    [Property(MaxTest = 100)]
    public Property A_truncated_message_asks_for_more_and_extra_bytes_after_one_are_left_alone()
    {
        var messages = new[]
        {
            VpnkitProtocol.Init(),
            VpnkitProtocol.Command(new VpnkitCommand(Uuid, IPAddress.Parse("192.168.65.9"))),
            VpnkitProtocol.Response(new VpnkitVif(1500, 1550, MacAddress.FromBytes([2, 0, 0, 0, 0, 1]))),
        };
        var cases = from which in Gen.Choose(0, 2)
                    from cut in Gen.Choose(0, messages[which].Length - 1)
                    from extra in Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b))
                    select (which, cut, extra);
        return Prop.ForAll(Arb.From(cases), c =>
        {
            var message = messages[c.which];
            bool Read(byte[] bytes) => c.which switch
            {
                0 => VpnkitProtocol.TryReadInit(bytes, out _),
                1 => VpnkitProtocol.TryReadCommand(bytes, out _),
                _ => VpnkitProtocol.TryReadResponse(bytes, out _),
            };
            Assert.False(Read(message[..c.cut]));
            Assert.True(Read([.. message, .. c.extra]));
        });
    }

    [Fact]
    public void Frames_travel_after_their_length_as_two_little_endian_bytes()
    {
        var frame = Enumerable.Range(0, 300).Select(i => (byte)i).ToArray();
        var queue = new FrameQueue(stream: FrameStream.Vpnkit);
        Assert.True(queue.TryQueue(frame));
        Assert.Equal([0x2c, 0x01, .. frame], queue.Pending.ToArray());
        var reader = new FrameStreamReader(stream: FrameStream.Vpnkit);
        reader.Received(queue.Pending);
        Assert.True(reader.TryReadFrame(out var read));
        Assert.Equal(frame, read.ToArray());
    }

    [Fact]
    public void The_longest_frame_is_the_longest_two_bytes_can_say()
    {
        Assert.Equal(65535, FrameStream.Vpnkit.MaxFrameLength);
        var queue = new FrameQueue(stream: FrameStream.Vpnkit);
        Assert.True(queue.TryQueue(new byte[65535]));
        Assert.False(queue.TryQueue(new byte[65536]));
        Assert.Equal(1, queue.DroppedFrames);
    }

    [Property(MaxTest = 100)]
    public Property Frames_too_short_for_ethernet_are_skipped_and_the_ones_around_them_come_out()
    {
        var cases = from bad in Gen.Choose(0, 13)
                    from reads in Gen.ListOf(Gen.Choose(1, 5000))
                    select (bad, reads);
        return Prop.ForAll(Arb.From(cases), c =>
        {
            byte[] before = [.. Enumerable.Range(0, 60).Select(i => (byte)i)];
            byte[] after = [.. Enumerable.Range(0, 9000).Select(i => (byte)(i * 3))];
            byte[] stream = [.. Prefixed(before), .. Prefixed(new byte[c.bad]), .. Prefixed(after)];
            var reader = new FrameStreamReader(stream: FrameStream.Vpnkit);
            var frames = new List<byte[]>();
            var offset = 0;
            using var sizes = c.reads.GetEnumerator();
            while (offset < stream.Length)
            {
                var size = Math.Min(sizes.MoveNext() ? sizes.Current : stream.Length, stream.Length - offset);
                reader.Received(stream.AsSpan(offset, size));
                offset += size;
                while (reader.TryReadFrame(out var frame))
                {
                    frames.Add(frame.ToArray());
                }
            }
            Assert.Equal([before, after], frames);
            Assert.Equal(1, reader.DroppedFrames);
        });
    }

    private static byte[] Prefixed(byte[] frame) => [(byte)frame.Length, (byte)(frame.Length >> 8), .. frame];
}
