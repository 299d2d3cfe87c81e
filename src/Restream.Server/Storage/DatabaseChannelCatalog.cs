using System.Collections.Concurrent;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Restream.Data;
using Restream.Ingest;

namespace Restream.Server.Storage;

/// <summary>Creates the database context for the configured provider.</summary>
public sealed class RestreamDbFactory(string connectionString)
{
    public string ConnectionString { get; } = connectionString;
    public bool IsPostgres => RestreamDb.IsPostgres(ConnectionString);

    public RestreamDb Create() => IsPostgres
        ? new PostgresRestreamDb(new DbContextOptionsBuilder<PostgresRestreamDb>().UseNpgsql(ConnectionString).Options)
        : new SqliteRestreamDb(new DbContextOptionsBuilder<SqliteRestreamDb>().UseSqlite(ConnectionString).Options);
}

/// <summary>Raised when channels or destinations change, so caches drop them and live streams follow.</summary>
public sealed class ChannelEvents
{
    public event Action<string>? ChannelChanged;

    public void OnChannelChanged(string channelName) => ChannelChanged?.Invoke(channelName);
}

/// <summary>
/// Channels from the database, cached for publishes (and dropped from the cache on every change), with
/// destination keys decrypted only here, on their way to the relay.
/// </summary>
public sealed class DatabaseChannelCatalog : IChannelCatalog
{
    public const string StreamKeyPrefix = "live";
    public const string DestinationKeyPurpose = "Restream.DestinationKey.v1";
    private static readonly TimeSpan CacheTime = TimeSpan.FromSeconds(30);

    private readonly RestreamDbFactory _db;
    private readonly IDataProtector _protector;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, (ChannelEntity Channel, DateTimeOffset Until)> _byKeyId = new();

    public DatabaseChannelCatalog(RestreamDbFactory db, IDataProtectionProvider protection, ChannelEvents events, TimeProvider time)
    {
        _db = db;
        _protector = protection.CreateProtector(DestinationKeyPurpose);
        _time = time;
        events.ChannelChanged += _ => _byKeyId.Clear();
    }

    public async ValueTask<ChannelConfig?> FindByStreamKeyAsync(string streamKey, CancellationToken cancellationToken)
    {
        var keyId = SecretKeys.IdOf(streamKey, StreamKeyPrefix);
        if (keyId is null)
        {
            return null;
        }

        var now = _time.GetUtcNow();
        ChannelEntity? channel;
        if (_byKeyId.TryGetValue(keyId, out var cached) && cached.Until > now)
        {
            channel = cached.Channel;
        }
        else
        {
            await using var db = _db.Create();
            channel = await db.Channels.AsNoTracking().Include(c => c.Destinations)
                .FirstOrDefaultAsync(c => c.StreamKeyId == keyId, cancellationToken).ConfigureAwait(false);
            if (channel is not null)
            {
                _byKeyId[keyId] = (channel, now + CacheTime);
            }
        }

        return channel is not null && SecretKeys.Verify(streamKey, channel.StreamKeySalt, channel.StreamKeyHash) ? ToConfig(channel) : null;
    }

    public async ValueTask<ChannelConfig?> FindByNameAsync(string name, CancellationToken cancellationToken)
    {
        await using var db = _db.Create();
        var channel = await db.Channels.AsNoTracking().Include(c => c.Destinations)
            .FirstOrDefaultAsync(c => c.Name == name, cancellationToken).ConfigureAwait(false);
        return channel is null ? null : ToConfig(channel);
    }

    private ChannelConfig ToConfig(ChannelEntity channel) => new(
        channel.Id.ToString(), channel.Name,
        [.. channel.Destinations.OrderBy(d => d.CreatedAt).Select(d => new DestinationConfig(
            d.Id.ToString(), d.Name, new Uri(d.Url), d.ProtectedKey is null ? null : _protector.Unprotect(d.ProtectedKey), d.Enabled))]);
}

/// <summary>Channels from configuration first, then from the database.</summary>
public sealed class CompositeChannelCatalog(StaticChannelCatalog configured, DatabaseChannelCatalog database) : IChannelCatalog
{
    public async ValueTask<ChannelConfig?> FindByStreamKeyAsync(string streamKey, CancellationToken cancellationToken) =>
        await configured.FindByStreamKeyAsync(streamKey, cancellationToken).ConfigureAwait(false)
        ?? await database.FindByStreamKeyAsync(streamKey, cancellationToken).ConfigureAwait(false);

    public async ValueTask<ChannelConfig?> FindByNameAsync(string name, CancellationToken cancellationToken) =>
        await configured.FindByNameAsync(name, cancellationToken).ConfigureAwait(false)
        ?? await database.FindByNameAsync(name, cancellationToken).ConfigureAwait(false);
}
