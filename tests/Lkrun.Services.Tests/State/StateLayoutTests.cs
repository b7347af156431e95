using Lkrun.Services.State;

namespace Lkrun.Services.Tests.State;

public class StateLayoutTests
{
    private readonly StateLayout _layout = new("/var/lib/vm-state");

    [Fact]
    public void Size_only_disks_are_numbered_by_position_in_the_state_dir()
    {
        Assert.Equal("/var/lib/vm-state/disk.raw", _layout.Disk(0));
        Assert.Equal("/var/lib/vm-state/disk1.raw", _layout.Disk(1));
        Assert.Equal("/var/lib/vm-state/disk2.raw", _layout.Disk(2));
    }

    [Fact]
    public void Vsock_sockets_are_named_by_cid_and_port_in_lowercase_hex()
    {
        Assert.Equal("/var/lib/vm-state/guest.00000946", _layout.GuestVsockSocket(2374));
        Assert.Equal("/var/lib/vm-state/00000002.0000abcd", _layout.HostVsockSocket(0xabcd));
    }

    [Fact]
    public void Each_share_has_its_virtiofsd_socket_and_log_by_position()
    {
        Assert.Equal("/var/lib/vm-state/virtiofs0.sock", _layout.VirtiofsSocket(0));
        Assert.Equal("/var/lib/vm-state/virtiofs1.log", _layout.VirtiofsLog(1));
        Assert.Contains("virtiofs99.sock", StateLayout.SocketNames);
    }

    [Fact]
    public void The_longest_socket_name_is_one_lkrun_uses()
    {
        Assert.Contains(StateLayout.SocketNames, name => name.Length == StateLayout.LongestSocketName);
        Assert.All(StateLayout.SocketNames, name => Assert.True(name.Length <= StateLayout.LongestSocketName));
        Assert.Equal("00000002.ffffffff".Length, StateLayout.LongestSocketName);
    }
}
