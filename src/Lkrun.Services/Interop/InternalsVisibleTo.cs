using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Lkrun.Services.Tests")]
[assembly: InternalsVisibleTo("Lkrun.Integration.Tests")]
[assembly: InternalsVisibleTo("Lkrun.Fuzz")]
