using System.Text;
using Lkrun.Services.Interop;
using Lkrun.Spec;

namespace Lkrun.Services.Boot;

/// <summary>
/// The kernel QEMU's <c>-kernel</c> gets, and what it offers the machine.
/// </summary>
/// <param name="Path">The file to boot: the image's own kernel, its inflated copy, or its decompressed ELF in the cache.</param>
/// <param name="IsPvhElf">An ELF kernel entered at its PVH entry point; otherwise QEMU loads it through the Linux boot protocol.</param>
/// <param name="VirtioMmio">The kernel finds virtio-mmio devices through ACPI (known for ELF kernels only).</param>
public sealed record BootKernel(string Path, bool IsPvhElf, bool VirtioMmio)
{
    /// <summary>A kernel QEMU loads as it is, known to offer nothing more.</summary>
    public static BootKernel AsIs(string path) => new(path, IsPvhElf: false, VirtioMmio: false);
}

/// <summary>The kernel cannot be booted the way the user forced; the message is one line naming the flag and file.</summary>
public sealed class KernelBootException(string message) : Exception(message), IUserError
{
    public int ExitCode => 1;
}

/// <summary>
/// Chooses how QEMU enters an x86 kernel. A bzImage carries the kernel compressed, behind a decompressor that
/// the guest runs under emulation; with <c>auto</c> (and <c>pvh</c>) lkrun decompresses it on the host once, keeps
/// the ELF in the per-user <see cref="KernelCache"/>, and boots that ELF straight at its PVH entry point. A
/// kernel that cannot go that way (no PVH note, an unsupported compression, a damaged image) boots as the
/// bzImage after one notice line with <c>auto</c>, and is an error with <c>pvh</c>. An ELF vmlinux boots as
/// it is; a gzip-compressed kernel file is inflated to <c>inflatedKernel</c> first (<see cref="KernelImage"/>).
/// </summary>
public static class KernelBoot
{
    public static BootKernel Prepare(string kernel, KernelEntry entry, string inflatedKernel, KernelCache cache, Action<string> notice)
    {
        var path = KernelImage.Uncompressed(kernel, inflatedKernel);
        var image = ReadImage(path);
        if (ElfKernel.HasSignature(image))
        {
            return PrepareElf(kernel, path, image, entry);
        }
        if (entry == KernelEntry.BzImage)
        {
            return BootKernel.AsIs(path);
        }
        if (!BzImageHeader.HasSignature(image))
        {
            return entry == KernelEntry.Pvh
                ? throw new KernelBootException($"-kernel-entry pvh: {kernel} is neither a bzImage nor an ELF kernel")
                : BootKernel.AsIs(path);
        }
        var key = KernelCache.KeyOf(image);
        var (booted, reason) = FromCache(cache, key) ?? Decompress(cache, key, image);
        if (booted is not null)
        {
            return booted;
        }
        if (entry == KernelEntry.Pvh)
        {
            throw new KernelBootException($"-kernel-entry pvh: {kernel}: {reason}");
        }
        notice($"{kernel}: {reason}; booting the bzImage as it is");
        return BootKernel.AsIs(path);
    }

    private static BootKernel PrepareElf(string kernel, string path, byte[] image, KernelEntry entry)
    {
        if (entry == KernelEntry.BzImage)
        {
            throw new KernelBootException($"-kernel-entry bzimage: {kernel} is an ELF kernel, not a bzImage");
        }
        ElfKernelFacts facts;
        try
        {
            facts = ElfKernel.Inspect(image);
        }
        catch (KernelImageException e)
        {
            throw new KernelBootException($"{kernel}: {e.Message}");
        }
        return facts.HasPvhEntry
            ? new BootKernel(path, IsPvhElf: true, facts.VirtioMmio)
            : throw new KernelBootException($"{kernel}: an ELF kernel without a PVH entry note (CONFIG_PVH), which QEMU cannot boot");
    }

    /// <summary>A cached ELF, or the reason cached for falling back; null when the cache knows nothing usable.</summary>
    private static (BootKernel? Kernel, string? Reason)? FromCache(KernelCache cache, string key)
    {
        if (cache.Find(key, KernelCache.KernelSuffix) is { } elfPath)
        {
            try
            {
                var facts = InspectCached(elfPath);
                if (facts.HasPvhEntry)
                {
                    return (new BootKernel(elfPath, IsPvhElf: true, facts.VirtioMmio), null);
                }
            }
            catch (Exception e) when (e is KernelImageException or IOException or UnauthorizedAccessException)
            {
                // Damaged, unreadable or pruned meanwhile: decompressed afresh.
            }
            TryRemove(cache, key, KernelCache.KernelSuffix);
            return null;
        }
        if (cache.Find(key, KernelCache.FallbackSuffix) is { } fallbackPath)
        {
            try
            {
                return (null, File.ReadAllText(fallbackPath).Trim());
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return null;
            }
        }
        return null;
    }

    /// <summary>
    /// Decompresses and checks the payload and caches the outcome: the ELF, or the reason it is unusable, which
    /// follows from the image's content alone.
    /// </summary>
    private static (BootKernel? Kernel, string? Reason) Decompress(KernelCache cache, string key, byte[] image)
    {
        byte[] elf;
        ElfKernelFacts facts;
        try
        {
            var header = BzImageHeader.Parse(image);
            elf = KernelPayload.Decompress(image.AsMemory(header.Payload));
            facts = ElfKernel.Inspect(elf);
            if (!facts.HasPvhEntry)
            {
                throw new KernelImageException("no PVH entry note (CONFIG_PVH) in its kernel");
            }
        }
        catch (KernelImageException e)
        {
            TryStore(cache, key, KernelCache.FallbackSuffix, Encoding.UTF8.GetBytes(e.Message + "\n"));
            return (null, e.Message);
        }
        return TryStore(cache, key, KernelCache.KernelSuffix, elf) is { } path
            ? (new BootKernel(path, IsPvhElf: true, facts.VirtioMmio), null)
            : (null, $"cannot write its decompressed kernel to {cache.Directory}");
    }

    private static string? TryStore(KernelCache cache, string key, string suffix, ReadOnlySpan<byte> content)
    {
        try
        {
            return cache.Store(key, suffix, content);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static void TryRemove(KernelCache cache, string key, string suffix)
    {
        try
        {
            cache.Remove(key, suffix);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// The facts of a cached ELF, read through a private read-only mapping: the checks read a few pages and scan
    /// the rest once, where copying the whole kernel into memory first would cost each boot tens of milliseconds.
    /// </summary>
    private static unsafe ElfKernelFacts InspectCached(string path)
    {
        using var file = File.OpenHandle(path);
        var length = RandomAccess.GetLength(file);
        if (length is 0 or > KernelImageLimits.MaxImageBytes)
        {
            throw new KernelImageException($"a cached kernel of {length} bytes");
        }
        using var mapping = MemoryMapping.MapReadOnly((int)file.DangerousGetHandle(), (nuint)length);
        // Safe: the mapping covers exactly length bytes and outlives the span, which does not escape this call.
        return ElfKernel.Inspect(new ReadOnlySpan<byte>((void*)mapping.Address, (int)length));
    }

    private static byte[] ReadImage(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        if (file.Length > KernelImageLimits.MaxImageBytes)
        {
            throw new KernelBootException($"{path}: {file.Length} bytes, more than a kernel's {KernelImageLimits.MaxImageBytes}");
        }
        var bytes = new byte[file.Length];
        file.ReadExactly(bytes);
        return bytes;
    }
}
