using Microsoft.Extensions.Options;
using Restream.Server;

// Run socket completions on the event thread instead of hopping to the thread pool: media relaying
// is many small non-blocking continuations, and the hop costs more CPU than the work (bench/).
// An operator can still say otherwise in the environment.
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}

try
{
    await RestreamApp.Build(args).RunAsync();
    return 0;
}
catch (OptionsValidationException e)
{
    Console.Error.WriteLine("restream: invalid configuration:");
    foreach (var failure in e.Failures)
    {
        Console.Error.WriteLine($"  - {failure}");
    }

    return 2;
}
