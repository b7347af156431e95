using System.Text;
using System.Text.Json;
using Lkrun.Spec;

namespace Lkrun.Fuzz.Targets;

/// <summary>
/// A state dir's <c>vm.json</c> as a user (or a damaged disk) may leave it: reading it fails only with a
/// <see cref="JsonException"/>; a spec it yields either passes validation or is refused with a
/// <see cref="SpecException"/>, and writes back to JSON that reads as the same spec.
/// </summary>
internal sealed class VmJsonTarget : IFuzzTarget
{
    public IEnumerable<byte[]> Seeds()
    {
        var cli = new CliTarget();
        foreach (var seed in cli.Seeds())
        {
            if (CliTarget.TrySpec(cli, seed) is { } spec)
            {
                yield return Encoding.UTF8.GetBytes(VmSpecJson.Serialize(spec));
            }
        }
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        VmSpec spec;
        try
        {
            spec = VmSpecJson.Deserialize(Encoding.UTF8.GetString(input));
        }
        catch (JsonException)
        {
            return;
        }
        try
        {
            VmSpecValidator.Validate(spec);
        }
        catch (SpecException)
        {
        }
        var again = VmSpecJson.Deserialize(VmSpecJson.Serialize(spec));
        Check.That(again == spec, "a spec read from vm.json writes back the same");
    }
}
