using System.Security.Cryptography;
using System.Text;

namespace Restream.Ingest;

/// <summary>A destination a channel's feed is pushed to.</summary>
public sealed record DestinationConfig(string Id, string Name, Uri Url, string? Key, bool Enabled)
{
    /// <summary>The URL for logs and listings: scheme, host, port and app only; never the key.</summary>
    public string SafeUrl
    {
        get
        {
            // With no separate key the key is the URL's last path segment: leave it out.
            var path = Url.AbsolutePath.TrimEnd('/');
            if (string.IsNullOrEmpty(Key) && path.LastIndexOf('/') is > 0 and var cut)
            {
                path = path[..cut];
            }

            // Query strings (an SRT streamid or passphrase) are never shown.
            return $"{Url.Scheme}://{Url.Host}:{Url.Port}{path}";
        }
    }
}

/// <summary>A channel: one stream key, one live stream at a time, its destinations.</summary>
public sealed record ChannelConfig(string Id, string Name, IReadOnlyList<DestinationConfig> Destinations);

/// <summary>Where ingest looks channels up. The configuration catalog now; the database with the API.</summary>
public interface IChannelCatalog
{
    /// <summary>The channel a stream key belongs to, or null. Implementations compare in constant time.</summary>
    ValueTask<ChannelConfig?> FindByStreamKeyAsync(string streamKey, CancellationToken cancellationToken);

    ValueTask<ChannelConfig?> FindByNameAsync(string name, CancellationToken cancellationToken);
}

/// <summary>Stream keys are kept as SHA-256 digests and compared with a fixed-time comparison.</summary>
public static class StreamKeys
{
    public static byte[] Digest(string streamKey) => SHA256.HashData(Encoding.UTF8.GetBytes(streamKey));

    public static bool Matches(byte[] digest, string candidate) =>
        CryptographicOperations.FixedTimeEquals(digest, Digest(candidate));
}

/// <summary>A catalog fixed at start-up (from configuration).</summary>
public sealed class StaticChannelCatalog : IChannelCatalog
{
    private readonly List<(byte[] KeyDigest, ChannelConfig Channel)> _channels;

    public StaticChannelCatalog(IEnumerable<(string StreamKey, ChannelConfig Channel)> channels)
    {
        _channels = [.. channels.Select(c => (StreamKeys.Digest(c.StreamKey), c.Channel))];
    }

    public ValueTask<ChannelConfig?> FindByStreamKeyAsync(string streamKey, CancellationToken cancellationToken)
    {
        var digest = StreamKeys.Digest(streamKey);
        ChannelConfig? found = null;
        foreach (var (keyDigest, channel) in _channels)
        {
            // Look at every channel so the time taken does not say which one matched.
            if (CryptographicOperations.FixedTimeEquals(keyDigest, digest))
            {
                found = channel;
            }
        }

        return ValueTask.FromResult(found);
    }

    public ValueTask<ChannelConfig?> FindByNameAsync(string name, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_channels.Select(c => c.Channel).FirstOrDefault(c => c.Name == name));
}

/// <summary>
/// Asked before a publish with a valid key goes live (the owner's on_publish webhook). Returns null to
/// allow, or the reason to refuse.
/// </summary>
public interface IPublishAuthorizer
{
    ValueTask<string?> AuthorizeAsync(ChannelConfig channel, string remote, CancellationToken cancellationToken);
}

/// <summary>Allows every publish with a valid key.</summary>
public sealed class AllowAllPublishes : IPublishAuthorizer
{
    public ValueTask<string?> AuthorizeAsync(ChannelConfig channel, string remote, CancellationToken cancellationToken) => ValueTask.FromResult<string?>(null);
}
