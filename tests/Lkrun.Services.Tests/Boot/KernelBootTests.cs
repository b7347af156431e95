using System.IO.Compression;
using Lkrun.Services.Boot;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Boot;

public sealed class KernelBootTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lkrun-boot-").FullName;
    private readonly List<string> _notices = [];
    private readonly KernelCache _cache;

    public KernelBootTests() => _cache = new KernelCache(Path.Combine(_dir, "cache"));

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string State => Directory.CreateDirectory(Path.Combine(_dir, "state")).FullName;

    private string Kernel(byte[] content, string name = "image-kernel")
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    private static byte[] BzImage(PayloadFormat format = PayloadFormat.Xz, bool pvh = true, bool virtioMmio = true) =>
        KernelFixtures.BzImage(KernelFixtures.Compress(format, KernelFixtures.Elf(pvh, virtioMmio)));

    private string Inflated => Path.Combine(State, "kernel");

    private BootKernel Prepare(string kernel, KernelEntry entry = KernelEntry.Auto) =>
        KernelBoot.Prepare(kernel, entry, Inflated, _cache, _notices.Add);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_bzimage_with_the_pvh_note_boots_its_decompressed_elf_from_the_cache(bool virtioMmio)
    {
        var image = BzImage(virtioMmio: virtioMmio);
        var booted = Prepare(Kernel(image));
        Assert.True(booted.IsPvhElf);
        Assert.Equal(virtioMmio, booted.VirtioMmio);
        Assert.Equal(Path.Combine(_cache.Directory, KernelCache.KeyOf(image) + KernelCache.KernelSuffix), booted.Path);
        Assert.Equal(KernelFixtures.Elf(virtioMmio: virtioMmio), File.ReadAllBytes(booted.Path));
        Assert.Empty(_notices);
    }

    [Fact]
    public void A_later_boot_takes_the_cached_elf_without_decompressing_again()
    {
        var kernel = Kernel(BzImage(virtioMmio: true));
        var first = Prepare(kernel);
        // Had the payload been decompressed again, the facts would be the payload's, not this stand-in's.
        File.WriteAllBytes(first.Path, KernelFixtures.Elf(virtioMmio: false));
        var second = Prepare(kernel);
        Assert.Equal(first.Path, second.Path);
        Assert.False(second.VirtioMmio);
    }

    [Fact]
    public void Two_images_with_the_same_content_share_one_entry()
    {
        var image = BzImage();
        var first = Prepare(Kernel(image, "one-kernel"));
        var second = Prepare(Kernel(image, "two-kernel"));
        Assert.Equal(first.Path, second.Path);
        Assert.Single(Directory.GetFiles(_cache.Directory));
    }

    [Theory]
    [InlineData(100)]
    [InlineData(0)]
    public void A_damaged_cache_entry_is_replaced(int truncatedLength)
    {
        var kernel = Kernel(BzImage());
        var first = Prepare(kernel);
        File.WriteAllBytes(first.Path, File.ReadAllBytes(first.Path)[..truncatedLength]);
        var second = Prepare(kernel);
        Assert.True(second.IsPvhElf);
        Assert.Equal(KernelFixtures.Elf(), File.ReadAllBytes(second.Path));
    }

    [Fact]
    public void A_bzimage_without_the_note_falls_back_with_one_notice_on_every_boot_and_decompresses_once()
    {
        var image = BzImage(pvh: false);
        var kernel = Kernel(image);
        var booted = Prepare(kernel);
        Assert.Equal(BootKernel.AsIs(kernel), booted);
        var notice = Assert.Single(_notices);
        Assert.Equal($"{kernel}: no PVH entry note (CONFIG_PVH) in its kernel; booting the bzImage as it is", notice);
        var marker = Path.Combine(_cache.Directory, KernelCache.KeyOf(image) + KernelCache.FallbackSuffix);
        Assert.True(File.Exists(marker));
        File.WriteAllText(marker, "the reason recorded the first time\n");
        Assert.Equal(BootKernel.AsIs(kernel), Prepare(kernel));
        Assert.Equal($"{kernel}: the reason recorded the first time; booting the bzImage as it is", _notices[1]);
    }

    [Fact]
    public void Pvh_forced_on_a_kernel_without_the_note_is_an_error_naming_flag_and_file()
    {
        var kernel = Kernel(BzImage(pvh: false));
        var error = Assert.Throws<KernelBootException>(() => Prepare(kernel, KernelEntry.Pvh));
        Assert.Equal($"-kernel-entry pvh: {kernel}: no PVH entry note (CONFIG_PVH) in its kernel", error.Message);
        Assert.Equal(1, error.ExitCode);
    }

    [Fact]
    public void Pvh_forced_boots_a_kernel_that_has_the_note()
    {
        Assert.True(Prepare(Kernel(BzImage()), KernelEntry.Pvh).IsPvhElf);
    }

    [Fact]
    public void Bzimage_forced_boots_the_image_as_it_is_and_touches_no_cache()
    {
        var kernel = Kernel(BzImage());
        Assert.Equal(BootKernel.AsIs(kernel), Prepare(kernel, KernelEntry.BzImage));
        Assert.False(Directory.Exists(_cache.Directory));
        Assert.Empty(_notices);
    }

    [Fact]
    public void An_unknown_payload_format_falls_back_with_a_notice()
    {
        var kernel = Kernel(KernelFixtures.BzImage([0xde, 0xad, 0xbe, 0xef, 0, 0, 1, 0]));
        Assert.Equal(BootKernel.AsIs(kernel), Prepare(kernel));
        Assert.Contains("unknown payload compression", Assert.Single(_notices));
    }

    [Fact]
    public void A_damaged_image_falls_back_with_a_notice()
    {
        var image = BzImage(PayloadFormat.Gzip);
        for (var i = image.Length / 2; i < image.Length / 2 + 64; i++)
        {
            image[i] ^= 0xff;
        }
        var kernel = Kernel(image);
        Assert.Equal(BootKernel.AsIs(kernel), Prepare(kernel));
        var notice = Assert.Single(_notices);
        Assert.StartsWith($"{kernel}: the gzip payload ", notice);
        Assert.EndsWith("; booting the bzImage as it is", notice);
    }

    [Fact]
    public void A_cache_that_cannot_be_written_falls_back_with_a_notice()
    {
        File.WriteAllText(_cache.Directory, "a file where the cache should be");
        var kernel = Kernel(BzImage());
        Assert.Equal(BootKernel.AsIs(kernel), Prepare(kernel));
        Assert.Equal($"{kernel}: cannot write its decompressed kernel to {_cache.Directory}; booting the bzImage as it is", Assert.Single(_notices));
    }

    [Fact]
    public void An_elf_kernel_boots_as_it_is()
    {
        var kernel = Kernel(KernelFixtures.Elf(virtioMmio: true));
        Assert.Equal(new BootKernel(kernel, IsPvhElf: true, VirtioMmio: true), Prepare(kernel));
        Assert.False(Directory.Exists(_cache.Directory));
    }

    [Fact]
    public void An_elf_kernel_without_the_note_is_an_error_since_qemu_cannot_boot_it()
    {
        var kernel = Kernel(KernelFixtures.Elf(pvh: false));
        Assert.Contains("without a PVH entry note", Assert.Throws<KernelBootException>(() => Prepare(kernel)).Message);
    }

    [Fact]
    public void Bzimage_forced_on_an_elf_kernel_is_an_error()
    {
        var kernel = Kernel(KernelFixtures.Elf());
        Assert.Equal($"-kernel-entry bzimage: {kernel} is an ELF kernel, not a bzImage", Assert.Throws<KernelBootException>(() => Prepare(kernel, KernelEntry.BzImage)).Message);
    }

    [Fact]
    public void A_kernel_of_another_kind_is_left_to_qemu_unless_pvh_is_forced()
    {
        var kernel = Kernel([0x4d, 0x5a, 1, 2, 3]);
        Assert.Equal(BootKernel.AsIs(kernel), Prepare(kernel));
        Assert.Contains("neither a bzImage nor an ELF", Assert.Throws<KernelBootException>(() => Prepare(kernel, KernelEntry.Pvh)).Message);
    }

    [Fact]
    public void A_gzip_compressed_bzimage_is_inflated_then_booted_through_pvh()
    {
        var image = BzImage();
        var kernel = Path.Combine(_dir, "image-kernel");
        using (var gzip = new GZipStream(File.Create(kernel), CompressionLevel.Fastest))
        {
            gzip.Write(image);
        }
        var booted = Prepare(kernel);
        Assert.True(booted.IsPvhElf);
        Assert.Equal(image, File.ReadAllBytes(Inflated));
        Assert.Equal(KernelCache.KeyOf(image) + KernelCache.KernelSuffix, Path.GetFileName(booted.Path));
    }
}
