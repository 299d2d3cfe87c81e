using Microsoft.Extensions.Options;
using Restream.Server;

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
