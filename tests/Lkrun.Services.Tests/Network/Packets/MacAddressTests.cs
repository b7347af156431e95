using FsCheck;
using FsCheck.Xunit;
using Lkrun.Services.Network;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.State;

namespace Lkrun.Services.Tests.Network.Packets;

public sealed class MacAddressTests : IDisposable
{
    private readonly string _parent = Directory.CreateTempSubdirectory("lkrun-mac-").FullName;

    public void Dispose() => Directory.Delete(_parent, recursive: true);

    [Property(MaxTest = 300)]
    public void Any_six_bytes_format_and_parse_back(byte a, byte b, byte c, byte d, byte e, byte f)
    {
        var mac = MacAddress.FromBytes([a, b, c, d, e, f]);
        Assert.Matches("^([0-9a-f]{2}:){5}[0-9a-f]{2}$", mac.ToString());
        Assert.True(MacAddress.TryParse(mac.ToString(), out var parsed));
        Assert.Equal(mac, parsed);
        Assert.Equal(a, parsed[0]);
        Assert.Equal(f, parsed[5]);
    }

    [Theory]
    [InlineData("")]
    [InlineData("02:00:00:00:00")]
    [InlineData("02:00:00:00:00:00:00")]
    [InlineData("02:00:00:00:00:0g")]
    [InlineData("2:00:00:00:00:00")]
    [InlineData("02-00-00-00-00-00")]
    public void Malformed_text_is_not_a_mac(string text)
    {
        Assert.False(MacAddress.TryParse(text, out _));
    }

    [Fact]
    public void New_addresses_are_local_unicast_and_differ()
    {
        var macs = Enumerable.Range(0, 64).Select(_ => MacAddress.NewLocallyAdministered()).ToList();
        Assert.All(macs, mac =>
        {
            Assert.True(mac.IsLocallyAdministered);
            Assert.False(mac.IsMulticast);
        });
        Assert.True(macs.Distinct().Count() > 60);
    }

    [Fact]
    public void The_state_dir_keeps_its_mac_across_runs()
    {
        var path = Path.Combine(_parent, "vm");
        MacAddress first;
        using (var state = StateDirectory.Acquire(path))
        {
            first = StableMacAddress.LoadOrCreate(state);
        }
        using (var state = StateDirectory.Acquire(path))
        {
            Assert.Equal(first, StableMacAddress.LoadOrCreate(state));
        }
        Assert.Equal(first + "\n", File.ReadAllText(Path.Combine(path, StateLayout.MacName)));
    }

    [Theory]
    [InlineData("not a mac")]
    [InlineData("01:00:5e:00:00:01")]
    public void A_damaged_or_multicast_mac_file_is_replaced(string content)
    {
        var path = Path.Combine(_parent, "vm");
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, StateLayout.MacName), content);
        using var state = StateDirectory.Acquire(path);
        var mac = StableMacAddress.LoadOrCreate(state);
        Assert.False(mac.IsMulticast);
        Assert.Equal(mac + "\n", File.ReadAllText(Path.Combine(path, StateLayout.MacName)));
    }
}
