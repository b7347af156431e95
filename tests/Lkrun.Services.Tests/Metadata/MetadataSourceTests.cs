using System.Diagnostics;
using System.Text;
using Lkrun.Services.Metadata;
using Lkrun.Spec;

namespace Lkrun.Services.Tests.Metadata;

public sealed class MetadataSourceTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("lkrun-metadata-source-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Metadata_text_is_written_as_utf8()
    {
        var path = Path.Combine(_directory, "data.iso");
        var id = Guid.NewGuid();
        using (var source = MetadataSource.Open(new InlineMetadata("hostname: täst\n")))
        {
            await source.WriteIsoAsync(path, id, Cancellation);
        }
        MetadataIsoTests.AssertImage(await File.ReadAllBytesAsync(path, Cancellation), Encoding.UTF8.GetBytes("hostname: täst\n"), id);
    }

    [Fact]
    public async Task Metadata_file_is_streamed_byte_for_byte()
    {
        var data = MetadataIsoTests.Pattern(70_000);
        var file = Path.Combine(_directory, "user-data.bin");
        await File.WriteAllBytesAsync(file, data, Cancellation);
        var path = Path.Combine(_directory, "data.iso");
        var id = Guid.NewGuid();
        using (var source = MetadataSource.Open(new MetadataFile(file)))
        {
            await source.WriteIsoAsync(path, id, Cancellation);
        }
        MetadataIsoTests.AssertImage(await File.ReadAllBytesAsync(path, Cancellation), data, id);
    }

    [Fact]
    public async Task A_fifo_is_opened_once_and_its_data_reaches_the_image()
    {
        var fifo = Path.Combine(_directory, "fifo");
        using (var mkfifo = Process.Start("mkfifo", [fifo]))
        {
            await mkfifo.WaitForExitAsync(Cancellation);
            Assert.Equal(0, mkfifo.ExitCode);
        }
        var data = MetadataIsoTests.Pattern(200_000);
        // The writer gets exactly one reader: a second open of the FIFO would find no writer and block forever.
        var writer = Task.Run(() => File.WriteAllBytes(fifo, data), Cancellation);
        var path = Path.Combine(_directory, "data.iso");
        var id = Guid.NewGuid();
        using (var source = MetadataSource.Open(new MetadataFile(fifo)))
        {
            await source.WriteIsoAsync(path, id, Cancellation);
        }
        await writer.WaitAsync(TimeSpan.FromSeconds(30), Cancellation);
        MetadataIsoTests.AssertImage(await File.ReadAllBytesAsync(path, Cancellation), data, id);
    }

    [Fact]
    public void An_unreadable_data_file_is_a_spec_error_naming_it()
    {
        var missing = Path.Combine(_directory, "missing");
        var error = Assert.Throws<SpecException>(() => MetadataSource.Open(new MetadataFile(missing)));
        Assert.Equal((SpecErrorKind.MissingFile, $"-data-file {missing}: cannot read it (no such file)"), (error.Kind, error.Message));

        error = Assert.Throws<SpecException>(() => MetadataSource.Open(new MetadataFile(_directory)));
        Assert.Equal($"-data-file {_directory}: cannot read it (it is a directory)", error.Message);
    }

    [Fact]
    public void Both_flags_are_a_usage_error_and_neither_is_no_metadata()
    {
        Assert.Null(MetadataSpec.FromFlags(null, null));
        Assert.Equal(new InlineMetadata("x"), MetadataSpec.FromFlags("x", null));
        Assert.Equal(new MetadataFile(Path.GetFullPath("rel")), MetadataSpec.FromFlags(null, "rel"));
        var error = Assert.Throws<SpecException>(() => MetadataSpec.FromFlags("x", "/y"));
        Assert.Equal((2, "-data and -data-file cannot both be given"), (error.ExitCode, error.Message));
    }
}
