using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Lkrun.Services.Metadata;

namespace Lkrun.Services.Tests.Metadata;

public sealed class MetadataIsoPropertyTests
{
    [Property(MaxTest = 300)]
    public void Any_bytes_and_instance_id_round_trip(NonNull<byte[]> userData, Guid instanceId)
    {
        MetadataIsoTests.AssertImage(MetadataIsoStructureTests.Image(userData.Get, instanceId), userData.Get, instanceId);
    }

    [Property(MaxTest = 100)]
    public Property Lengths_near_sector_boundaries_round_trip_through_a_stream()
    {
        var lengths = Gen.Choose(0, 4).SelectMany(sectors => Gen.Choose(-2, 2), (sectors, delta) => Math.Max(0, sectors * IsoReader.SectorSize + delta));
        var cases = lengths.SelectMany(_ => ArbMap.Default.GeneratorFor<int>(), (length, seed) => (length, seed));
        return Prop.ForAll(Arb.From(cases), c =>
        {
            var userData = new byte[c.length];
            new Random(c.seed).NextBytes(userData);
            var id = Guid.NewGuid();
            using var destination = new MemoryStream();
            MetadataIso.WriteAsync(destination, new MemoryStream(userData), userData.Length, id).GetAwaiter().GetResult();
            MetadataIsoTests.AssertImage(destination.ToArray(), userData, id);
        });
    }
}
