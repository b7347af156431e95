using Microsoft.Win32.SafeHandles;
using Lkrun.Services.Interop;

namespace Lkrun.Services.VhostUser;

/// <summary>One guest RAM region: its guest-physical range, the front-end's address of it and where it is mapped here.</summary>
internal readonly record struct GuestMemoryRegion(ulong GuestAddress, ulong Size, ulong UserAddress, nint Host);

/// <summary>The guest's memory does not cover what was asked (a bad table from the front-end).</summary>
internal sealed class GuestMemoryException(string message) : Exception(message);

/// <summary>
/// The only way from a guest or front-end address to host memory. A range resolves only when it lies entirely
/// inside one region; anything else fails, so a guest can never make the device touch memory it did not share.
/// </summary>
internal sealed class GuestMemory : IDisposable
{
    private readonly GuestMemoryRegion[] _regions;
    private readonly IDisposable[] _mappings;

    public GuestMemory(IReadOnlyList<GuestMemoryRegion> regions, IDisposable[]? mappings = null)
    {
        foreach (var region in regions)
        {
            if (region.Size == 0
                || region.GuestAddress > ulong.MaxValue - region.Size
                || region.UserAddress > ulong.MaxValue - region.Size
                || region.Host == 0
                || (ulong)region.Host > ulong.MaxValue - region.Size)
            {
                throw new GuestMemoryException(
                    $"region at guest 0x{region.GuestAddress:x} of 0x{region.Size:x} bytes wraps around or is empty");
            }
        }

        var sorted = regions.OrderBy(region => region.GuestAddress).ToArray();
        for (var i = 1; i < sorted.Length; i++)
        {
            if (sorted[i].GuestAddress < sorted[i - 1].GuestAddress + sorted[i - 1].Size)
            {
                throw new GuestMemoryException($"regions at guest 0x{sorted[i - 1].GuestAddress:x} and 0x{sorted[i].GuestAddress:x} overlap");
            }
        }

        _regions = sorted;
        _mappings = mappings ?? [];
    }

    public IReadOnlyList<GuestMemoryRegion> Regions => _regions;

    /// <summary>
    /// Maps each region from its file descriptor (the front-end's memfd) and takes ownership of the mappings. The
    /// descriptors may be closed afterwards.
    /// </summary>
    public static GuestMemory Map(IReadOnlyList<MemoryRegionDescription> descriptions, IReadOnlyList<FileDescriptor> descriptors)
    {
        if (descriptions.Count != descriptors.Count)
        {
            throw new GuestMemoryException($"{descriptions.Count} regions but {descriptors.Count} descriptors");
        }

        var mappings = new List<IDisposable>();
        try
        {
            var regions = new GuestMemoryRegion[descriptions.Count];
            for (var i = 0; i < regions.Length; i++)
            {
                var description = descriptions[i];
                if (description.Size == 0 || description.MmapOffset > long.MaxValue - description.Size)
                {
                    throw new GuestMemoryException($"region {i}: size 0x{description.Size:x} at offset 0x{description.MmapOffset:x} is invalid");
                }

                // Touching a mapping past the end of its file is a SIGBUS, which would end lkrun, not one request.
                using var file = new SafeFileHandle(descriptors[i].Number, ownsHandle: false);
                var fileLength = RandomAccess.GetLength(file);
                if ((ulong)fileLength < description.MmapOffset + description.Size)
                {
                    throw new GuestMemoryException(
                        $"region {i}: size 0x{description.Size:x} at offset 0x{description.MmapOffset:x} runs past its file's 0x{fileLength:x} bytes");
                }

                // Mapping from offset 0 keeps the mmap offset free of page-alignment rules.
                var mapping = MemoryMapping.MapShared(descriptors[i].Number, (nuint)(description.MmapOffset + description.Size));
                mappings.Add(mapping);
                regions[i] = new GuestMemoryRegion(
                    description.GuestAddress, description.Size, description.UserAddress, mapping.Address + (nint)description.MmapOffset);
            }

            return new GuestMemory(regions, [.. mappings]);
        }
        catch
        {
            foreach (var mapping in mappings)
            {
                mapping.Dispose();
            }

            throw;
        }
    }

    /// <summary>The host address of guest-physical <c>[address, address + length)</c>, if one region holds all of it.</summary>
    public bool TryTranslate(ulong address, ulong length, out nint host) => TryTranslate(address, length, user: false, out host);

    /// <summary>The host address of front-end (user) address range, as used for ring addresses.</summary>
    public bool TryTranslateUser(ulong address, ulong length, out nint host) => TryTranslate(address, length, user: true, out host);

    private bool TryTranslate(ulong address, ulong length, bool user, out nint host)
    {
        foreach (var region in _regions)
        {
            var start = user ? region.UserAddress : region.GuestAddress;
            if (address >= start && address - start < region.Size && length <= region.Size - (address - start))
            {
                host = region.Host + (nint)(address - start);
                return true;
            }
        }

        host = 0;
        return false;
    }

    public void Dispose()
    {
        foreach (var mapping in _mappings)
        {
            mapping.Dispose();
        }
    }
}
