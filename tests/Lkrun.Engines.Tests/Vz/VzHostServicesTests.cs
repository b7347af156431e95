using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Lkrun.Engines.Tests.Vz.Fakes;
using Lkrun.Engines.Vz;
using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Services.Hosting;
using Lkrun.Services.Network.Dhcp;
using Lkrun.Services.Network.Leases;
using Lkrun.Services.Network.Packets;
using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Engines.Tests.Vz;

/// <summary>
/// The engine on lkrun's real host services, as <c>lkrun run vz</c> wires them on a Mac, with the recording runtime
/// in the framework's place: what the framework's devices are handed carries the console, the network and vsock.
/// </summary>
public sealed class VzHostServicesTests : IAsyncLifetime
{
    private const uint ExposedPort = 2374;

    /// <summary>The oldest macOS the backend runs on, whose network device takes no MTU but the standard one.</summary>
    private const int OldestMacOS = 12;

    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("lkrun-vz-services-");
    private readonly FakeObjCRuntime _runtime = new() { Host = new MacOSVersion(OldestMacOS) };
    private readonly (Socket Relay, Socket Reader) _terminal = SocketPairOf(SocketType.Stream);
    private readonly List<string> _notices = [];
    private StateDirectory? _state;
    private HostServices? _services;
    private IRunningVm? _vm;

    private static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    private string Path(string name) => System.IO.Path.Combine(_directory.FullName, name);

    public async ValueTask InitializeAsync()
    {
        System.IO.File.WriteAllBytes(Path("kernel"), [.. VzFixtures.Arm64Image(), .. new byte[256]]);
        System.IO.File.WriteAllBytes(Path("initrd.img"), [1, 2, 3]);
        var spec = VzFixtures.Spec(new KernelInitrdBoot(Path("kernel"), Path("initrd.img"), "console=ttyS0")) with
        {
            StateDirectory = Path("state"),
            Metadata = new InlineMetadata("{\"hostname\":\"demo\"}"),
            VsockPorts = new([ExposedPort]),
        };
        var facts = new VzHostFacts(new MacOSVersion(OldestMacOS), Architecture.Arm64, _ => _runtime);
        var plan = new VirtualizationFrameworkEngine(facts, _notices.Add).Prepare(spec);
        var preflight = HostServices.Check(spec, plan.Services, LeaseRegistry.ForHome(Path("xdg-state"), _directory.FullName));
        _state = StateDirectory.Acquire(spec.StateDirectory);
        var console = new ConsoleSettings(new NetworkStream(_terminal.Relay, ownsSocket: true), null, _ => { }, _ => { });
        _services = await HostServices.StartAsync(preflight, _state, console, _notices.Add, Cancellation);
        _vm = await plan.StartAsync(_services.Attachments, Cancellation);
    }

    public async ValueTask DisposeAsync()
    {
        if (_vm is not null)
        {
            await _vm.DisposeAsync();
        }
        if (_services is not null)
        {
            await _services.DisposeAsync();
        }
        _state?.Dispose();
        _terminal.Reader.Dispose();
        _runtime.Dispose();
        _directory.Delete(recursive: true);
    }

    /// <summary>The descriptor the framework was handed for a device, told apart by its socket type.</summary>
    private Socket DeviceEnd(SocketType type) => _runtime.FileHandleDescriptors.Keys
        .Select(descriptor => new Socket(new SafeSocketHandle(descriptor, ownsHandle: false)))
        .First(socket => socket.SocketType == type);

    [Fact]
    public async Task The_guests_console_output_reaches_the_terminal()
    {
        using var guestConsole = DeviceEnd(SocketType.Stream);

        await guestConsole.SendAsync("Welcome to LinuxKit\r\n"u8.ToArray(), Cancellation);

        var buffer = new byte[64];
        var text = new StringBuilder();
        while (!text.ToString().Contains("Welcome to LinuxKit"))
        {
            var count = await _terminal.Reader.ReceiveAsync(buffer, Cancellation);
            Assert.NotEqual(0, count);
            text.Append(Encoding.ASCII.GetString(buffer, 0, count));
        }
    }

    [Fact]
    public async Task The_network_device_gets_its_lease_and_the_mtu_it_takes_from_lkruns_dhcp()
    {
        using var guestNetwork = DeviceEnd(SocketType.Dgram);
        var mac = _services!.Attachments.Mac!.Value;
        Assert.Contains(mac.ToString(), Strings("NSString"));

        await guestNetwork.SendAsync(DhcpDiscover(mac), Cancellation);

        var reply = new byte[2048];
        var length = await guestNetwork.ReceiveAsync(reply, Cancellation);
        Assert.True(EthernetFrame.TryParse(reply.AsSpan(0, length), out var frame));
        Assert.True(Ipv4Packet.TryParse(frame.Payload, out var packet));
        Assert.True(UdpDatagram.TryParse(packet.Payload, out var udp));
        Assert.True(DhcpMessage.TryParse(udp.Payload, out var offer));
        Assert.Equal(DhcpMessageType.Offer, offer.MessageType);
        Assert.Equal(_services.Attachments.Network!.Address, Ipv4Packet.ToAddress(offer.YourAddress));
        Assert.Equal(1500, Option(udp.Payload, DhcpMessage.OptionInterfaceMtu) is { Length: 2 } mtu ? BinaryPrimitives.ReadUInt16BigEndian(mtu) : -1);
    }

    [Fact]
    public async Task A_host_connection_to_an_exposed_port_reaches_the_guest_through_the_vms_socket_device()
    {
        _runtime.GuestPorts[ExposedPort] = GuestPort.Listening;
        using var host = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

        await host.ConnectAsync(new UnixDomainSocketEndPoint(_services!.Attachments.State.GuestVsockSocket(ExposedPort)), Cancellation);
        await host.SendAsync("ping"u8.ToArray(), Cancellation);

        var guest = await WaitForGuestEndAsync(ExposedPort);
        var buffer = new byte[4];
        Assert.Equal(4, await guest.ReceiveAsync(buffer, Cancellation));
        Assert.Equal("ping", Encoding.ASCII.GetString(buffer));
    }

    [Fact]
    public void The_kernel_initrd_and_metadata_cd_are_the_ones_the_services_prepared()
    {
        var attachments = _services!.Attachments;
        var urls = Strings("NSURL");

        Assert.Contains(Path("kernel"), urls);
        Assert.Contains(Path("initrd.img"), urls);
        Assert.Contains(attachments.MetadataIso, urls);
        Assert.True(System.IO.File.Exists(attachments.MetadataIso));
    }

    [Fact]
    public async Task The_guest_powering_off_ends_the_run_cleanly()
    {
        _runtime.GuestPowersOff();

        Assert.Equal(new VmExit(VmExitReason.GuestPoweredOff), await _vm!.Exit.WaitAsync(Cancellation));
    }

    private List<string?> Strings(string cls) => [.. _runtime.Objects(cls).Select(made => made.Value as string)];

    private async Task<Socket> WaitForGuestEndAsync(uint port)
    {
        while (true)
        {
            _runtime.Drain();
            if (_runtime.GuestEnds.TryGetValue(port, out var ends) && ends.Count > 0)
            {
                return ends[0];
            }
            await Task.Delay(10, Cancellation);
        }
    }

    private static (Socket, Socket) SocketPairOf(SocketType type)
    {
        var (first, second) = type == SocketType.Stream ? Posix.StreamPair() : Posix.DatagramPair();
        return (Posix.Adopt(first), Posix.Adopt(second));
    }

    private static byte[] DhcpDiscover(MacAddress mac)
    {
        const int bootpLength = DhcpMessage.OptionsOffset + 4;
        var frame = new byte[EthernetFrame.HeaderLength + Ipv4Packet.MinimumHeaderLength + UdpDatagram.HeaderLength + bootpLength];
        var bootp = frame.AsSpan(frame.Length - bootpLength);
        bootp[0] = DhcpMessage.BootRequest;
        bootp[1] = 1;
        bootp[2] = 6;
        BinaryPrimitives.WriteUInt32BigEndian(bootp[4..], 0x1c2b3a49);
        mac.CopyTo(bootp.Slice(28, 6));
        BinaryPrimitives.WriteUInt32BigEndian(bootp[236..], DhcpMessage.MagicCookie);
        bootp[DhcpMessage.OptionsOffset] = DhcpMessage.OptionMessageType;
        bootp[DhcpMessage.OptionsOffset + 1] = 1;
        bootp[DhcpMessage.OptionsOffset + 2] = (byte)DhcpMessageType.Discover;
        bootp[DhcpMessage.OptionsOffset + 3] = DhcpMessage.OptionEnd;
        EthernetFrame.WriteHeader(frame, MacAddress.Broadcast, mac, EthernetFrame.TypeIpv4);
        var broadcast = Ipv4Packet.ToUInt32(IPAddress.Broadcast);
        Ipv4Packet.WriteHeader(frame.AsSpan(EthernetFrame.HeaderLength), Ipv4Packet.ProtocolUdp, 0, broadcast, UdpDatagram.HeaderLength + bootpLength);
        UdpDatagram.WriteHeader(frame.AsSpan(EthernetFrame.HeaderLength + Ipv4Packet.MinimumHeaderLength), 0, 68, broadcast, 67, bootpLength);
        return frame;
    }

    /// <summary>The value of a DHCP option, walking the options after the magic cookie.</summary>
    private static byte[]? Option(ReadOnlySpan<byte> message, byte code)
    {
        for (var at = DhcpMessage.OptionsOffset; at < message.Length && message[at] != DhcpMessage.OptionEnd;)
        {
            if (message[at] == DhcpMessage.OptionPad)
            {
                at++;
                continue;
            }
            var length = message[at + 1];
            if (message[at] == code)
            {
                return message.Slice(at + 2, length).ToArray();
            }
            at += 2 + length;
        }
        return null;
    }
}
