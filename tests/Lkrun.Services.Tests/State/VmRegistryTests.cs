using Lkrun.Services.State;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.State;

public sealed class VmRegistryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-registry-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private VmRegistry Registry() => new(Path.Combine(_dir, "xdg", "lkrun"));

    private string StateDir(string name) => Directory.CreateDirectory(Path.Combine(_dir, name)).FullName;

    [Fact]
    public void A_vm_is_named_after_its_image_made_unique()
    {
        var registry = Registry();
        Assert.Equal("demo", registry.Register(null, "demo", StateDir("a")));
        Assert.Equal("demo-2", registry.Register(null, "demo", StateDir("b")));
        Assert.Equal("demo-3", registry.Register(null, "demo", StateDir("c")));
        Assert.Equal(["demo", "demo-2", "demo-3"], registry.List().Select(vm => vm.Name));
    }

    [Fact]
    public void A_state_dir_keeps_its_name_across_runs_and_can_be_renamed()
    {
        var registry = Registry();
        var state = StateDir("a");
        Assert.Equal("demo", registry.Register(null, "demo", state));
        Assert.Equal("demo", registry.Register(null, "other-image", state));
        Assert.Equal("web", registry.Register("web", "demo", state));
        Assert.Equal(new RegisteredVm("web", state), Assert.Single(registry.List()));
    }

    [Fact]
    public void A_name_given_to_another_vm_is_a_usage_error_that_changes_nothing()
    {
        var registry = Registry();
        var first = StateDir("a");
        registry.Register("web", "demo", first);
        var error = Assert.Throws<SpecException>(() => registry.ChooseName("web", "demo", StateDir("b")));
        Assert.Equal(2, error.ExitCode);
        Assert.Equal($"--name web: already the name of the VM in {first}; choose another, or remove that VM with lkrun rm web", error.Message);
        Assert.Throws<SpecException>(() => registry.Register("web", "demo", StateDir("b")));
        Assert.Equal(new RegisteredVm("web", first), Assert.Single(registry.List()));
    }

    [Theory]
    [InlineData("-web")]
    [InlineData("we b")]
    [InlineData("a/b")]
    [InlineData("")]
    public void Names_that_could_be_mistaken_for_flags_or_paths_are_refused(string name)
    {
        Assert.NotNull(VmRegistry.WhyNotAName(name));
        Assert.Throws<SpecException>(() => Registry().ChooseName(name, "demo", StateDir("a")));
    }

    [Fact]
    public void An_image_name_that_is_no_valid_name_is_made_one()
    {
        Assert.Equal("my-image", Registry().ChooseName(null, "my image", StateDir("a")));
        Assert.Equal("vm", Registry().ChooseName(null, "---", StateDir("b")));
    }

    [Fact]
    public void A_removed_vm_frees_its_name_and_a_vanished_state_dir_is_not_listed()
    {
        var registry = Registry();
        var first = StateDir("a");
        var second = StateDir("b");
        registry.Register("web", "demo", first);
        registry.Register("db", "demo", second);
        registry.Remove(first);
        Directory.Delete(second);
        Assert.Empty(registry.List());
        Assert.Equal("web", registry.Register("web", "demo", StateDir("c")));
    }

    [Fact]
    public async Task Concurrent_registrations_all_land_with_distinct_names()
    {
        // Each registration opens the lock file afresh, so their flocks exclude each other as separate lkruns' do.
        var states = Enumerable.Range(0, 24).Select(i => StateDir($"vm{i}")).ToList();
        var names = await Task.WhenAll(states.Select(state => Task.Run(() => Registry().Register(null, "demo", state))));
        Assert.Equal(names.Length, names.Distinct().Count());
        Assert.Equal(states.Order(), Registry().List().Select(vm => vm.StateDirectory).Order());
    }
}
