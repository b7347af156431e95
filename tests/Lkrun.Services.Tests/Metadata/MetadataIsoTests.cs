using System.Text;
using Lkrun.Services.Metadata;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Metadata;

public sealed class MetadataIsoTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-metadata-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    public static TheoryData<string, byte[]> UserDataCases => new()
    {
        { "empty", [] },
        { "one byte", [0x41] },
        { "one sector", Pattern(2048) },
        { "one sector and a byte", Pattern(2049) },
        { "binary with NULs", [0, 0, 1, 0, 0xFF, 0, 0x0A, 0, 0] },
        { "text without newline", Encoding.UTF8.GetBytes("hostname: täst") },
    };

    [Theory]
    [MemberData(nameof(UserDataCases))]
    public void Write_round_trips_the_user_data(string name, byte[] userData)
    {
        _ = name;
        AssertImage(MetadataIsoStructureTests.Image(userData, Guid.Empty), userData, Guid.Empty);
    }

    [Theory]
    [MemberData(nameof(UserDataCases))]
    public async Task WriteAsync_round_trips_the_user_data_from_a_stream(string name, byte[] userData)
    {
        _ = name;
        var id = Guid.NewGuid();
        using var destination = new MemoryStream();
        await MetadataIso.WriteAsync(destination, new MemoryStream(userData), userData.Length, id, TestContext.Current.CancellationToken);
        AssertImage(destination.ToArray(), userData, id);
    }

    [Theory]
    [MemberData(nameof(UserDataCases))]
    public async Task WriteFileAsync_round_trips_the_user_data_from_memory(string name, byte[] userData)
    {
        _ = name;
        var id = Guid.NewGuid();
        var path = Path.Combine(_directory, "data.iso");
        await MetadataIso.WriteFileAsync(path, userData, id, TestContext.Current.CancellationToken);
        AssertImage(await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken), userData, id);
        Assert.Equal(["data.iso"], Directory.GetFiles(_directory).Select(Path.GetFileName));
    }

    [Fact]
    public async Task WriteFileAsync_round_trips_64_MiB_from_a_file()
    {
        var userData = new byte[64 << 20];
        new Random(64).NextBytes(userData);
        var source = Path.Combine(_directory, "user-data");
        await File.WriteAllBytesAsync(source, userData, TestContext.Current.CancellationToken);
        var path = Path.Combine(_directory, "data.iso");
        var id = Guid.NewGuid();

        await using (var input = File.OpenRead(source))
        {
            await MetadataIso.WriteFileAsync(path, input, input.Length, id, TestContext.Current.CancellationToken);
        }

        var image = await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken);
        Assert.Equal(MetadataIso.ImageLength(userData.Length), image.Length);
        // One extent serves both files, so the image holds the data once.
        Assert.True(image.Length < userData.Length + (1 << 20));
        AssertImage(image, userData, id);
    }

    [Fact]
    public async Task WriteAsync_takes_exactly_the_given_length_from_a_longer_stream()
    {
        var source = new MemoryStream(Pattern(5000));
        using var destination = new MemoryStream();
        await MetadataIso.WriteAsync(destination, source, 3000, Guid.Empty, TestContext.Current.CancellationToken);
        Assert.Equal(3000, source.Position);
        AssertImage(destination.ToArray(), Pattern(5000)[..3000], Guid.Empty);
    }

    [Fact]
    public async Task WriteAsync_fails_when_the_stream_ends_before_the_given_length()
    {
        using var destination = new MemoryStream();
        var error = await Assert.ThrowsAsync<EndOfStreamException>(() =>
            MetadataIso.WriteAsync(destination, new MemoryStream(new byte[10]), 11, Guid.Empty, TestContext.Current.CancellationToken));
        Assert.Contains("10 of 11", error.Message);
    }

    [Fact]
    public async Task WriteFileAsync_leaves_nothing_behind_when_the_data_fails_to_read()
    {
        var path = Path.Combine(_directory, "data.iso");
        await Assert.ThrowsAsync<IOException>(() =>
            MetadataIso.WriteFileAsync(path, new FailingStream(3 << 20), 4 << 20, Guid.Empty, TestContext.Current.CancellationToken));
        Assert.Empty(Directory.GetFileSystemEntries(_directory));
    }

    [Fact]
    public async Task WriteFileAsync_keeps_an_existing_file_when_it_fails()
    {
        var path = Path.Combine(_directory, "data.iso");
        await File.WriteAllTextAsync(path, "previous", TestContext.Current.CancellationToken);
        await Assert.ThrowsAsync<EndOfStreamException>(() =>
            MetadataIso.WriteFileAsync(path, new MemoryStream(new byte[5]), 6, Guid.Empty, TestContext.Current.CancellationToken));
        Assert.Equal("previous", await File.ReadAllTextAsync(path, TestContext.Current.CancellationToken));
        Assert.Equal(["data.iso"], Directory.GetFiles(_directory).Select(Path.GetFileName));
    }

    [Fact]
    public async Task WriteFileAsync_replaces_an_existing_file()
    {
        var path = Path.Combine(_directory, "data.iso");
        await File.WriteAllBytesAsync(path, new byte[1 << 20], TestContext.Current.CancellationToken);
        await MetadataIso.WriteFileAsync(path, "new"u8.ToArray(), Guid.Empty, TestContext.Current.CancellationToken);
        AssertImage(await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken), "new"u8.ToArray(), Guid.Empty);
    }

    [Fact]
    public async Task WriteFileAsync_stops_and_cleans_up_when_cancelled()
    {
        var path = Path.Combine(_directory, "data.iso");
        using var cancellation = new CancellationTokenSource();
        var source = new FailingStream(1 << 30, afterFirstRead: cancellation.Cancel);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            MetadataIso.WriteFileAsync(path, source, 1 << 30, Guid.Empty, cancellation.Token));
        Assert.Empty(Directory.GetFileSystemEntries(_directory));
    }

    [Fact]
    public async Task WriteFileAsync_into_a_missing_directory_fails_without_creating_it()
    {
        var path = Path.Combine(_directory, "missing", "data.iso");
        await Assert.ThrowsAsync<DirectoryNotFoundException>(() =>
            MetadataIso.WriteFileAsync(path, "x"u8.ToArray(), Guid.Empty, TestContext.Current.CancellationToken));
        Assert.Empty(Directory.GetFileSystemEntries(_directory));
    }

    [Fact]
    public async Task Lengths_beyond_one_extent_are_rejected_before_writing()
    {
        using var destination = new MemoryStream();
        Assert.Throws<ArgumentOutOfRangeException>(() => MetadataIso.ImageLength(MetadataIso.MaxUserDataLength + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => MetadataIso.ImageLength(-1));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            MetadataIso.WriteAsync(destination, Stream.Null, MetadataIso.MaxUserDataLength + 1, Guid.Empty, TestContext.Current.CancellationToken));
        Assert.Equal(0, destination.Length);
    }

    internal static void AssertImage(byte[] image, byte[] userData, Guid instanceId)
    {
        Assert.Equal(MetadataIso.ImageLength(userData.Length), image.Length);
        var iso = new IsoReader(image);
        var expectedMetaData = $"instance-id: {instanceId.ToString("D").ToLowerInvariant()}\n";
        foreach (var files in new[] { iso.RockRidgeFiles(), iso.JolietFiles() })
        {
            Assert.Equal(["config", "meta-data", "user-data"], files.Keys.Order(StringComparer.Ordinal));
            Assert.Equal(userData, iso.ReadFile(files["config"]));
            Assert.Equal(userData, iso.ReadFile(files["user-data"]));
            Assert.Equal(expectedMetaData, Encoding.ASCII.GetString(iso.ReadFile(files["meta-data"])));
        }
        var end = (int)(iso.RockRidgeFiles()["user-data"].Extent * (long)IsoReader.SectorSize + userData.Length);
        Assert.All(image[end..], b => Assert.Equal(0, b));
    }

    internal static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        for (var i = 0; i < length; i++)
        {
            bytes[i] = (byte)(i * 7 + i / 251);
        }
        return bytes;
    }

    /// <summary>Yields zeros, then fails with an I/O error once <c>failAfter</c> bytes have been read.</summary>
    private sealed class FailingStream(long failAfter, Action? afterFirstRead = null) : Stream
    {
        private long _read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_read >= failAfter)
            {
                throw new IOException("simulated read failure");
            }
            var n = (int)Math.Min(count, failAfter - _read);
            Array.Clear(buffer, offset, n);
            _read += n;
            afterFirstRead?.Invoke();
            return n;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
