using System.Text;
using Lkrun.Services.Metadata;
using Lkrun.Services.Tests.Metadata;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// The metadata ISO written for arbitrary user data (the first 16 bytes are the instance id): the image has the
/// length promised, and an independent ISO 9660 reader finds <c>user-data</c> and <c>config</c> holding exactly the
/// data and <c>meta-data</c> naming the instance, under both Rock Ridge and Joliet names, with zeros after the data.
/// </summary>
internal sealed class MetadataIsoTarget : IFuzzTarget
{
    public IEnumerable<byte[]> Seeds()
    {
        var id = Guid.Parse("6f1c8a56-2b0e-4a55-9a43-0d5e3c1b2a10").ToByteArray();
        yield return [.. id, .. "#cloud-config\nhostname: guest\n"u8];
        yield return [.. id, .. """{"ssh":{"entries":{"authorized_keys":{"perm":"0600","content":"ssh-ed25519 AAAA"}}}}"""u8];
        yield return [.. id, .. new byte[2047]];
        yield return id;
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length < 16 || input.Length > 256 * 1024)
        {
            return;
        }
        var instanceId = new Guid(input[..16]);
        var userData = input[16..].ToArray();
        using var destination = new MemoryStream();
        MetadataIso.WriteAsync(destination, new MemoryStream(userData), userData.Length, instanceId).GetAwaiter().GetResult();
        var image = destination.ToArray();
        Check.That(image.Length == MetadataIso.ImageLength(userData.Length), "the image has the length promised");
        var iso = new IsoReader(image);
        var metaData = $"instance-id: {instanceId.ToString("D").ToLowerInvariant()}\n";
        foreach (var files in new[] { iso.RockRidgeFiles(), iso.JolietFiles() })
        {
            Check.That(files.Keys.Order(StringComparer.Ordinal).SequenceEqual(["config", "meta-data", "user-data"]), "the image holds config, meta-data and user-data");
            Check.That(iso.ReadFile(files["user-data"]).AsSpan().SequenceEqual(userData), "user-data is the data");
            Check.That(iso.ReadFile(files["config"]).AsSpan().SequenceEqual(userData), "config is the data");
            Check.That(Encoding.ASCII.GetString(iso.ReadFile(files["meta-data"])) == metaData, "meta-data names the instance");
        }
        var end = (int)(iso.RockRidgeFiles()["user-data"].Extent * (long)IsoReader.SectorSize + userData.Length);
        Check.That(!image.AsSpan(end).ContainsAnyExcept((byte)0), "zeros follow the data");
    }
}
