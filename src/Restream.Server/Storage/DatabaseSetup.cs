using Microsoft.EntityFrameworkCore;
using Restream.Data;
using Restream.Ingest.Hub;
using Restream.Server.Api;

namespace Restream.Server.Storage;

/// <summary>Options of the store (<c>Restream:Database</c>, <c>Restream:Api</c>).</summary>
public sealed class StorageOptions
{
    /// <summary>SQLite file by default; a PostgreSQL connection string ("Host=…") for a cluster.</summary>
    public string Database { get; set; } = "Data Source=./data/restream.db";

    /// <summary>Where Data Protection keeps the key that encrypts destination keys.</summary>
    public string DataProtectionKeys { get; set; } = "./data/keys";

    /// <summary>
    /// An admin API key to create when none exists (automation, tests). Without it the first start
    /// creates one and prints it once.
    /// </summary>
    public string? BootstrapApiKey { get; set; }

    /// <summary>Bad API keys one address may present per minute before it gets 429 for the rest of it.</summary>
    public int MaxAuthFailuresPerMinute { get; set; } = 20;
}

/// <summary>
/// Runs first at start-up: applies the provider's migrations, and on a first run creates the admin
/// API key so the API can be used at all.
/// </summary>
public sealed partial class DatabaseMigrator(RestreamDbFactory factory, StorageOptions options, TimeProvider time, ILogger<DatabaseMigrator> log) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!factory.IsPostgres)
        {
            var builder = new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(factory.ConnectionString);
            var directory = Path.GetDirectoryName(Path.GetFullPath(builder.DataSource));
            if (!string.IsNullOrEmpty(directory))
            {
                Directory.CreateDirectory(directory);
            }
        }

        await using var db = factory.Create();
        await db.Database.MigrateAsync(cancellationToken);
        LogReady(log, factory.IsPostgres ? "PostgreSQL" : "SQLite");

        if (await db.ApiKeys.AnyAsync(cancellationToken))
        {
            return;
        }

        string key;
        SecretKeys.Issued issued;
        if (!string.IsNullOrEmpty(options.BootstrapApiKey))
        {
            key = options.BootstrapApiKey;
            var id = SecretKeys.IdOf(key, ApiKeyAuthenticator.Prefix)
                ?? throw new InvalidOperationException("Restream:Api:BootstrapApiKey must look like rsk_<10 characters>_<32 characters>");
            var salt = System.Security.Cryptography.RandomNumberGenerator.GetBytes(16);
            issued = new SecretKeys.Issued(key, id, salt, SecretKeys.Hash(salt, key));
        }
        else
        {
            issued = SecretKeys.Issue(ApiKeyAuthenticator.Prefix);
            key = issued.Key;
            // Printed once, to the console only (not to the log pipeline): the operator copies it now.
            Console.WriteLine();
            Console.WriteLine("  First start: an admin API key was created. It is shown this once; store it now:");
            Console.WriteLine($"    {key}");
            Console.WriteLine("  Use it as 'Authorization: Bearer <key>' on /api/v1. Create more with POST /api/v1/api-keys.");
            Console.WriteLine();
        }

        db.ApiKeys.Add(new Data.ApiKeyEntity
        {
            Id = Guid.NewGuid(), Name = "bootstrap admin", KeyId = issued.Id, Salt = issued.Salt, Hash = issued.Hash,
            Scope = Scopes.Admin, CreatedAt = time.GetUtcNow(),
        });
        await db.SaveChangesAsync(cancellationToken);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "configuration store ready ({Provider})")]
    private static partial void LogReady(ILogger logger, string provider);
}

/// <summary>Writes every ended stream with its totals to the store.</summary>
public sealed partial class SessionRecorder(StreamRegistry registry, RestreamDbFactory factory, TimeProvider time, ILogger<SessionRecorder> log) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        registry.StreamEnded += OnEnded;
        return Task.CompletedTask;
    }

    private void OnEnded(StreamHub hub) => _ = RecordAsync(hub);

    private async Task RecordAsync(StreamHub hub)
    {
        try
        {
            await using var db = factory.Create();
            db.Sessions.Add(new StreamSessionEntity
            {
                Id = Guid.NewGuid(), ChannelId = Guid.TryParse(hub.ChannelId, out var id) ? id : null, ChannelName = hub.Name,
                Publisher = hub.PublisherRemote, StartedAt = hub.StartedAt, EndedAt = time.GetUtcNow(), Frames = hub.FramesIn,
                Bytes = hub.BytesIn, VideoCodec = hub.Media?.VideoCodec, Width = hub.Media?.Width ?? 0, Height = hub.Media?.Height ?? 0,
            });
            await db.SaveChangesAsync();
        }
        catch (Exception e) when (e is DbUpdateException or InvalidOperationException or System.Data.Common.DbException)
        {
            LogFailed(log, hub.Name, e.Message);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        registry.StreamEnded -= OnEnded;
        return Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "[stream {Stream}] could not record the ended session: {Error}")]
    private static partial void LogFailed(ILogger logger, string stream, string error);
}
