using System.Runtime.InteropServices;
using Lkrun.Services.Interop;
using Lkrun.Services.Tests.Metadata;

namespace Lkrun.Services.Tests.Interop;

/// <summary>
/// The structs handed to libslirp must match its header byte for byte. The C names and offsets below were read
/// off libslirp 4.7.0's libslirp.h with offsetof on x86_64; the second test asks the C compiler again, against the
/// header installed on this machine.
/// </summary>
public sealed class LibSlirpLayoutTests
{
    public static readonly TheoryData<string, string, int> ConfigFields = new()
    {
        { nameof(SlirpConfig.Version), "version", 0 },
        { nameof(SlirpConfig.Restricted), "restricted", 4 },
        { nameof(SlirpConfig.InEnabled), "in_enabled", 8 },
        { nameof(SlirpConfig.VNetwork), "vnetwork", 12 },
        { nameof(SlirpConfig.VNetmask), "vnetmask", 16 },
        { nameof(SlirpConfig.VHost), "vhost", 20 },
        { nameof(SlirpConfig.In6Enabled), "in6_enabled", 24 },
        { nameof(SlirpConfig.VPrefixAddr6), "vprefix_addr6", 28 },
        { nameof(SlirpConfig.VPrefixLength), "vprefix_len", 44 },
        { nameof(SlirpConfig.VHost6), "vhost6", 48 },
        { nameof(SlirpConfig.VHostName), "vhostname", 64 },
        { nameof(SlirpConfig.TftpServerName), "tftp_server_name", 72 },
        { nameof(SlirpConfig.TftpPath), "tftp_path", 80 },
        { nameof(SlirpConfig.BootFile), "bootfile", 88 },
        { nameof(SlirpConfig.VDhcpStart), "vdhcp_start", 96 },
        { nameof(SlirpConfig.VNameServer), "vnameserver", 100 },
        { nameof(SlirpConfig.VNameServer6), "vnameserver6", 104 },
        { nameof(SlirpConfig.VDnsSearch), "vdnssearch", 120 },
        { nameof(SlirpConfig.VDomainName), "vdomainname", 128 },
        { nameof(SlirpConfig.IfMtu), "if_mtu", 136 },
        { nameof(SlirpConfig.IfMru), "if_mru", 144 },
        { nameof(SlirpConfig.DisableHostLoopback), "disable_host_loopback", 152 },
        { nameof(SlirpConfig.EnableEmu), "enable_emu", 153 },
        { nameof(SlirpConfig.OutboundAddr), "outbound_addr", 160 },
        { nameof(SlirpConfig.OutboundAddr6), "outbound_addr6", 168 },
        { nameof(SlirpConfig.DisableDns), "disable_dns", 176 },
        { nameof(SlirpConfig.DisableDhcp), "disable_dhcp", 177 },
    };

    public static readonly TheoryData<string, string, int> CallbackFields = new()
    {
        { nameof(SlirpCallbacks.SendPacket), "send_packet", 0 },
        { nameof(SlirpCallbacks.GuestError), "guest_error", 8 },
        { nameof(SlirpCallbacks.ClockGetNs), "clock_get_ns", 16 },
        { nameof(SlirpCallbacks.TimerNew), "timer_new", 24 },
        { nameof(SlirpCallbacks.TimerFree), "timer_free", 32 },
        { nameof(SlirpCallbacks.TimerMod), "timer_mod", 40 },
        { nameof(SlirpCallbacks.RegisterPollFd), "register_poll_fd", 48 },
        { nameof(SlirpCallbacks.UnregisterPollFd), "unregister_poll_fd", 56 },
        { nameof(SlirpCallbacks.Notify), "notify", 64 },
        { nameof(SlirpCallbacks.InitCompleted), "init_completed", 72 },
        { nameof(SlirpCallbacks.TimerNewOpaque), "timer_new_opaque", 80 },
    };

    private const int ConfigSize = 184;
    private const int CallbacksSize = 88;

    [Theory]
    [MemberData(nameof(ConfigFields))]
    public void Each_config_field_is_where_the_header_puts_it(string field, string cName, int offset)
    {
        Assert.True(offset == (int)Marshal.OffsetOf<SlirpConfig>(field), $"{cName}: at {Marshal.OffsetOf<SlirpConfig>(field)}, not {offset}");
    }

    [Theory]
    [MemberData(nameof(CallbackFields))]
    public void Each_callback_is_where_the_header_puts_it(string field, string cName, int offset)
    {
        Assert.True(offset == (int)Marshal.OffsetOf<SlirpCallbacks>(field), $"{cName}: at {Marshal.OffsetOf<SlirpCallbacks>(field)}, not {offset}");
    }

    [Fact]
    public unsafe void The_structs_have_the_headers_sizes_and_every_field_is_listed()
    {
        Assert.Equal(ConfigSize, sizeof(SlirpConfig));
        Assert.Equal(CallbacksSize, sizeof(SlirpCallbacks));
        Assert.Equal(typeof(SlirpConfig).GetFields().Length, ConfigFields.Count);
        Assert.Equal(typeof(SlirpCallbacks).GetFields().Length, CallbackFields.Count);
        Assert.Equal(8, sizeof(LibC.PollFd));
    }

    /// <summary>Compiles a program printing offsetof for every field against this machine's libslirp.h.</summary>
    [Fact]
    public async Task The_offsets_match_the_installed_header()
    {
        if (!File.Exists("/usr/include/slirp/libslirp.h"))
        {
            Assert.Fail("/usr/include/slirp/libslirp.h is missing: install libslirp-dev, whose header this test checks the structs against");
        }
        var directory = Directory.CreateTempSubdirectory("lkrun-slirp-layout-").FullName;
        try
        {
            var lines = new List<string> { "#include <stdio.h>", "#include <stddef.h>", "#include <slirp/libslirp.h>", "int main(void) {" };
            lines.AddRange(ConfigFields.Select(row => $"printf(\"config {row.Data.Item2} %zu\\n\", offsetof(SlirpConfig, {row.Data.Item2}));"));
            lines.AddRange(CallbackFields.Select(row => $"printf(\"cb {row.Data.Item2} %zu\\n\", offsetof(SlirpCb, {row.Data.Item2}));"));
            lines.Add("printf(\"config sizeof %zu\\ncb sizeof %zu\\n\", sizeof(SlirpConfig), sizeof(SlirpCb));");
            lines.Add("return 0; }");
            var source = Path.Combine(directory, "layout.c");
            var program = Path.Combine(directory, "layout");
            await File.WriteAllLinesAsync(source, lines, TestContext.Current.CancellationToken);
            await HostTool.RunCheckedAsync("gcc", "gcc", "-o", program, source);
            var output = (await HostTool.RunCheckedAsync(program, "gcc")).Text;

            var expected = ConfigFields.Select(row => $"config {row.Data.Item2} {(int)Marshal.OffsetOf<SlirpConfig>(row.Data.Item1)}")
                .Concat(CallbackFields.Select(row => $"cb {row.Data.Item2} {(int)Marshal.OffsetOf<SlirpCallbacks>(row.Data.Item1)}"))
                .Append($"config sizeof {Marshal.SizeOf<SlirpConfig>()}")
                .Append($"cb sizeof {Marshal.SizeOf<SlirpCallbacks>()}");
            Assert.Equal(expected, output.TrimEnd('\n').Split('\n'));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
