using Microsoft.Extensions.Options;
using Restream.Ingest;

namespace Restream.Server;

/// <summary>A channel as configuration gives it (<c>Restream:Channels:N</c>), until the API owns them.</summary>
public sealed class ChannelOptions
{
    public string? Name { get; set; }
    public string? StreamKey { get; set; }
    public List<DestinationOptions> Destinations { get; set; } = [];
}

/// <summary>A destination (<c>Restream:Channels:N:Destinations:M</c>).</summary>
public sealed class DestinationOptions
{
    public string? Name { get; set; }
    public string? Url { get; set; }
    public string? Key { get; set; }
    public bool Enabled { get; set; } = true;
}

/// <summary>The channels section; validated at start-up with errors that name the offending key.</summary>
public sealed class ChannelsOptions
{
    public List<ChannelOptions> Channels { get; set; } = [];

    public StaticChannelCatalog ToCatalog() => new(Channels.Select((c, i) => (c.StreamKey!, new ChannelConfig(
        $"ch{i}", c.Name!,
        [.. c.Destinations.Select((d, j) => new DestinationConfig($"ch{i}-d{j}", d.Name ?? $"destination {j}", new Uri(d.Url!), d.Key, d.Enabled))]))));
}

public sealed class ChannelsOptionsValidator : IValidateOptions<ChannelsOptions>
{
    public ValidateOptionsResult Validate(string? name, ChannelsOptions options)
    {
        var errors = new List<string>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var keys = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Channels.Count; i++)
        {
            var channel = options.Channels[i];
            var path = $"Restream:Channels:{i}";
            if (string.IsNullOrWhiteSpace(channel.Name))
            {
                errors.Add($"{path}:Name is required");
            }
            else if (!names.Add(channel.Name))
            {
                errors.Add($"{path}:Name \"{channel.Name}\" is used by another channel");
            }
            else if (channel.Name.Any(c => c is '/' or '?' or ' '))
            {
                errors.Add($"{path}:Name \"{channel.Name}\" may not contain '/', '?' or spaces");
            }

            if (string.IsNullOrWhiteSpace(channel.StreamKey))
            {
                errors.Add($"{path}:StreamKey is required");
            }
            else if (channel.StreamKey.Length < 8)
            {
                errors.Add($"{path}:StreamKey is too short (8 characters at least)");
            }
            else if (!keys.Add(channel.StreamKey))
            {
                errors.Add($"{path}:StreamKey is used by another channel");
            }

            for (var j = 0; j < channel.Destinations.Count; j++)
            {
                var destination = channel.Destinations[j];
                var dpath = $"{path}:Destinations:{j}";
                if (string.IsNullOrWhiteSpace(destination.Url))
                {
                    errors.Add($"{dpath}:Url is required");
                    continue;
                }

                if (!Uri.TryCreate(destination.Url, UriKind.Absolute, out var url)
                    || url.Scheme is not ("rtmp" or "rtmps" or "srt"))
                {
                    errors.Add($"{dpath}:Url must be an rtmp://, rtmps:// or srt:// URL (got \"{Redact(destination.Url)}\")");
                    continue;
                }

                if (string.IsNullOrEmpty(url.Host))
                {
                    errors.Add($"{dpath}:Url has no host");
                }

                if (url.Scheme != "srt" && string.IsNullOrEmpty(destination.Key) && url.AbsolutePath.Trim('/').Split('/').Length < 2)
                {
                    errors.Add($"{dpath}:Key is required (or put the stream key last in the Url path)");
                }
            }
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>Shows scheme and host of a bad URL but not its path, which may hold a key.</summary>
    private static string Redact(string url)
    {
        var cut = url.IndexOf('/', url.IndexOf("//", StringComparison.Ordinal) is var s and >= 0 ? s + 2 : 0);
        return cut < 0 ? url : url[..cut] + "/…";
    }
}

public sealed class RtmpIngestOptionsValidator : IValidateOptions<RtmpIngestOptions>
{
    public ValidateOptionsResult Validate(string? name, RtmpIngestOptions o)
    {
        var errors = new List<string>();
        if (o.Port is < 0 or > 65535)
        {
            errors.Add($"Restream:Rtmp:Port must be between 0 and 65535 (got {o.Port})");
        }

        if (!System.Net.IPAddress.TryParse(o.Address, out _))
        {
            errors.Add($"Restream:Rtmp:Address must be an IP address (got \"{o.Address}\")");
        }

        if (string.IsNullOrWhiteSpace(o.App) || o.App.Contains('/'))
        {
            errors.Add($"Restream:Rtmp:App must be a single path segment (got \"{o.App}\")");
        }

        if (o.ChunkSize is < 128 or > 65536)
        {
            errors.Add($"Restream:Rtmp:ChunkSize must be between 128 and 65536 (got {o.ChunkSize})");
        }

        if (o.PublishTimeout <= TimeSpan.Zero)
        {
            errors.Add("Restream:Rtmp:PublishTimeout must be positive");
        }

        if (o.IdleTimeout <= TimeSpan.Zero)
        {
            errors.Add("Restream:Rtmp:IdleTimeout must be positive");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

public sealed class RtmpsIngestOptionsValidator : IValidateOptions<RtmpsIngestOptions>
{
    public ValidateOptionsResult Validate(string? name, RtmpsIngestOptions o)
    {
        var errors = new List<string>();
        if (o.Port is < 0 or > 65535)
        {
            errors.Add($"Restream:Rtmps:Port must be between 0 and 65535 (got {o.Port})");
        }

        if (o.Enabled && !File.Exists(o.CertificateFile))
        {
            errors.Add($"Restream:Rtmps:CertificateFile \"{o.CertificateFile}\" does not exist");
        }

        if (o.Enabled && !string.IsNullOrEmpty(o.KeyFile) && !File.Exists(o.KeyFile))
        {
            errors.Add($"Restream:Rtmps:KeyFile \"{o.KeyFile}\" does not exist");
        }

        if (!System.Net.IPAddress.TryParse(o.Address, out _))
        {
            errors.Add($"Restream:Rtmps:Address must be an IP address (got \"{o.Address}\")");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
