namespace Lkrun.Integration.Tests.Infrastructure;

/// <summary>
/// The guest images built by tests/images/build.sh (LKRUN_TEST_IMAGES, default out/images). A missing image is a
/// failure that says how to build it, never a silent skip.
/// </summary>
public static class TestImages
{
    public static string Root => Environment.GetEnvironmentVariable("LKRUN_TEST_IMAGES") ?? Path.Combine(Repository.Root, "out", "images");

    /// <summary>The test guest on the small kernel: <c>guest-kernel</c>, <c>guest-initrd.img</c>, <c>guest-cmdline</c>, ...</summary>
    public static string Guest => Require(Path.Combine(Root, "guest", "guest"), "-kernel");

    /// <summary>The demo image on Debian's cloud kernel, loading its modules from the initrd.</summary>
    public static string Demo => Require(Path.Combine(Root, "demo", "demo"), "-kernel");

    public static string Require(string prefix, string suffix)
    {
        Assert.True(File.Exists(prefix + suffix), $"{prefix + suffix} is missing: build the test images with tests/images/build.sh");
        return prefix;
    }
}
