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
    var app = RestreamApp.Build(args);
    var rtmp = app.Services.GetService<Restream.Ingest.Rtmp.RtmpServer>();
    await app.RunAsync();
    // A listener that could not start stops the host (its reason is logged, naming the key): say so in the exit code.
    return rtmp?.BoundEndpoint.IsFaulted == true ? 2 : 0;
}
catch (Exception e) when (AddressInUse(e) is { } what)
{
    Console.Error.WriteLine($"restream: cannot listen: {what} is already in use. Is another Restream (or nginx-rtmp, SRS, OBS's server) " +
                            "running? Stop it, or choose other ports: --urls=http://0.0.0.0:8081, --Restream:Rtmp:Port=1936.");
    return 2;
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

static string? AddressInUse(Exception? e)
{
    for (; e is not null; e = e.InnerException)
    {
        if (e is IOException { InnerException: Microsoft.AspNetCore.Connections.AddressInUseException } bind)
        {
            // Kestrel: "Failed to bind to address http://0.0.0.0:8080: address already in use."
            var message = bind.Message;
            var at = message.IndexOf("address ", StringComparison.Ordinal);
            var end = message.LastIndexOf(':');
            return at >= 0 && end > at ? "the HTTP address " + message[(at + 8)..end] : "the HTTP address";
        }

        if (e is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.AddressAlreadyInUse })
        {
            return "a port";
        }
    }

    return null;
}
