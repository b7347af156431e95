using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Lkrun.Services.Metadata;

namespace Lkrun.Services.Tests.Metadata;

/// <summary>
/// The image as readers written elsewhere see it: isoinfo (genisoimage), xorriso and bsdtar (libarchive), with Rock
/// Ridge and with Joliet names. These tools must be installed; a missing one fails the test.
/// </summary>
public sealed partial class HostReaderTests : IDisposable
{
    private static readonly string[] FileNames = ["config", "meta-data", "user-data"];

    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-metadata-readers-").FullName;
    private readonly Guid _instanceId = Guid.NewGuid();

    public static TheoryData<string, byte[]> UserDataCases => MetadataIsoTests.UserDataCases;

    public void Dispose()
    {
        // Extractors copy the image's read-only modes onto what they create, the target directory included.
        foreach (var directory in Directory.GetDirectories(_directory, "*", SearchOption.AllDirectories).Prepend(_directory))
        {
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
        }
        Directory.Delete(_directory, recursive: true);
    }

    [Theory]
    [MemberData(nameof(UserDataCases))]
    public async Task Isoinfo_lists_exact_names_and_reads_the_bytes_with_rock_ridge_and_with_joliet(string name, byte[] userData)
    {
        _ = name;
        var iso = await WriteImageAsync(userData);
        foreach (var extension in new[] { "-R", "-J" })
        {
            var listing = await HostTool.RunCheckedAsync("isoinfo", "genisoimage", "-i", iso, extension, "-l");
            var entries = IsoinfoEntry().Matches(listing.Text).ToDictionary(m => m.Groups["name"].Value, m => long.Parse(m.Groups["size"].Value));
            Assert.Equal([".", "..", .. FileNames], entries.Keys.Order(StringComparer.Ordinal));
            Assert.Equal(userData.Length, entries["config"]);
            Assert.Equal(userData.Length, entries["user-data"]);
            foreach (var file in FileNames)
            {
                var extracted = await HostTool.RunCheckedAsync("isoinfo", "genisoimage", "-i", iso, extension, "-x", "/" + file);
                Assert.Equal(Expected(file, userData), extracted.Output);
            }
        }
    }

    [Fact]
    public async Task Isoinfo_finds_the_label_rock_ridge_and_joliet()
    {
        var description = (await HostTool.RunCheckedAsync("isoinfo", "genisoimage", "-i", await WriteImageAsync("x"u8.ToArray()), "-d")).Text;
        Assert.Contains("Volume id: CIDATA\n", description);
        Assert.Contains("Logical block size is: 2048\n", description);
        Assert.Contains("Joliet with UCS level 3 found", description);
        Assert.Contains("Rock Ridge signatures version 1 found", description);
    }

    [Theory]
    [MemberData(nameof(UserDataCases))]
    public async Task Xorriso_lists_exact_names_and_extracts_the_bytes(string name, byte[] userData)
    {
        _ = name;
        var iso = await WriteImageAsync(userData);
        var listing = await HostTool.RunCheckedAsync("xorriso", "xorriso", "-indev", iso, "-ls", "/");
        Assert.Equal(FileNames.Select(f => $"'{f}'"), listing.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("Volume id    : 'CIDATA'", listing.Error);

        var target = Path.Combine(_directory, "xorriso");
        await HostTool.RunCheckedAsync("xorriso", "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", target);
        AssertExtracted(target, userData);
    }

    [Theory]
    [MemberData(nameof(UserDataCases))]
    public async Task Bsdtar_extracts_exact_names_and_bytes_with_rock_ridge_and_with_joliet(string name, byte[] userData)
    {
        _ = name;
        var iso = await WriteImageAsync(userData);
        var rockRidge = Directory.CreateDirectory(Path.Combine(_directory, "bsdtar-rr")).FullName;
        await HostTool.RunCheckedAsync("bsdtar", "libarchive-tools", "-xf", iso, "-C", rockRidge);
        AssertExtracted(rockRidge, userData);

        var joliet = Directory.CreateDirectory(Path.Combine(_directory, "bsdtar-joliet")).FullName;
        await HostTool.RunCheckedAsync("bsdtar", "libarchive-tools", "--options", "iso9660:!rockridge", "-xf", iso, "-C", joliet);
        AssertExtracted(joliet, userData);
    }

    [Fact]
    public async Task Blkid_sees_an_iso9660_volume_labelled_CIDATA()
    {
        var iso = await WriteImageAsync("x"u8.ToArray());
        var probe = await HostTool.RunCheckedAsync("blkid", "util-linux", "-p", "-o", "export", iso);
        Assert.Contains("TYPE=iso9660\n", probe.Text);
        Assert.Contains("LABEL=CIDATA\n", probe.Text);
    }

    [Fact]
    public async Task Every_reader_gets_64_MiB_back_exactly()
    {
        var userData = new byte[64 << 20];
        new Random(6464).NextBytes(userData);
        var iso = await WriteImageAsync(userData);
        var expected = SHA256.HashData(userData);

        foreach (var extension in new[] { "-R", "-J" })
        {
            foreach (var file in new[] { "config", "user-data" })
            {
                var extracted = await HostTool.RunCheckedAsync("isoinfo", "genisoimage", "-i", iso, extension, "-x", "/" + file);
                Assert.Equal(expected, SHA256.HashData(extracted.Output));
            }
        }

        var xorriso = Path.Combine(_directory, "xorriso");
        await HostTool.RunCheckedAsync("xorriso", "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", xorriso);
        var bsdtar = Directory.CreateDirectory(Path.Combine(_directory, "bsdtar")).FullName;
        await HostTool.RunCheckedAsync("bsdtar", "libarchive-tools", "-xf", iso, "-C", bsdtar);
        foreach (var target in new[] { xorriso, bsdtar })
        {
            Assert.Equal(FileNames, Directory.GetFiles(target).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            foreach (var file in new[] { "config", "user-data" })
            {
                await using var stream = File.OpenRead(Path.Combine(target, file));
                Assert.Equal(expected, await SHA256.HashDataAsync(stream, TestContext.Current.CancellationToken));
            }
        }
    }

    private async Task<string> WriteImageAsync(byte[] userData)
    {
        var path = Path.Combine(_directory, "data.iso");
        await MetadataIso.WriteFileAsync(path, userData, _instanceId, TestContext.Current.CancellationToken);
        return path;
    }

    private byte[] Expected(string file, byte[] userData) =>
        file == "meta-data" ? Encoding.ASCII.GetBytes($"instance-id: {_instanceId:D}\n") : userData;

    private void AssertExtracted(string directory, byte[] userData)
    {
        Assert.Equal(FileNames, Directory.GetFileSystemEntries(directory).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        foreach (var file in FileNames)
        {
            Assert.Equal(Expected(file, userData), File.ReadAllBytes(Path.Combine(directory, file)));
        }
    }

    // isoinfo -l: "-r--r--r--   1    0    0              12 Nov 28 2026 [     27 00]  config "
    [GeneratedRegex(@"^\S{10}\s+\d+\s+\d+\s+\d+\s+(?<size>\d+) .*?\]  (?<name>.+?) ?$", RegexOptions.Multiline)]
    private static partial Regex IsoinfoEntry();
}
