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
        MigrationGuard? guard = null;
        if (!factory.IsPostgres)
        {
            var builder = new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(factory.ConnectionString);
            if (builder.Mode != Microsoft.Data.Sqlite.SqliteOpenMode.Memory && builder.DataSource is { Length: > 0 } and not ":memory:")
            {
                var path = Path.GetFullPath(builder.DataSource);
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                guard = await MigrationGuard.AcquireAsync(path + ".migrating", log, cancellationToken);
            }
        }

        await using var db = factory.Create();
        using (guard)
        {
            if (guard is not null)
            {
                await ClearStaleLockAsync(db, cancellationToken);
            }

            await db.Database.MigrateAsync(cancellationToken);
        }

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

    /// <summary>
    /// EF Core locks a SQLite database for migrating with a row in <c>__EFMigrationsLock</c>, which
    /// nothing removes when the process that wrote it dies (killed, out of memory, power lost), and
    /// every later start would wait for it forever (dotnet/efcore#38958). We migrate only while holding
    /// <see cref="MigrationGuard"/>, which the kernel releases with its holder: a row found then was left
    /// by a process that is gone.
    /// </summary>
    private async Task ClearStaleLockAsync(RestreamDb db, CancellationToken cancellationToken)
    {
        var exists = await db.Database
            .SqlQueryRaw<int>("SELECT COUNT(*) AS \"Value\" FROM sqlite_master WHERE type = 'table' AND name = '__EFMigrationsLock'")
            .SingleAsync(cancellationToken);
        if (exists == 0)
        {
            return;
        }

        var since = await db.Database.SqlQueryRaw<string>("SELECT \"Timestamp\" AS \"Value\" FROM \"__EFMigrationsLock\"").ToListAsync(cancellationToken);
        if (since.Count > 0)
        {
            await db.Database.ExecuteSqlRawAsync("DELETE FROM \"__EFMigrationsLock\"", cancellationToken);
            LogStaleLock(log, string.Join(", ", since));
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "configuration store ready ({Provider})")]
    private static partial void LogReady(ILogger logger, string provider);

    [LoggerMessage(Level = LogLevel.Warning, Message = "removed the database's migration lock left since {Since} by a server that stopped while starting; starting normally")]
    private static partial void LogStaleLock(ILogger logger, string since);
}

/// <summary>
/// An exclusive lock on a file beside the SQLite database, held while migrating: the kernel drops it
/// when the holding process ends, however it ends, so whoever holds it knows no one else is migrating.
/// A second server on the same file waits for it.
/// </summary>
public sealed partial class MigrationGuard : IDisposable
{
    private readonly FileStream _file;

    private MigrationGuard(FileStream file) => _file = file;

    public static async Task<MigrationGuard> AcquireAsync(string path, ILogger log, CancellationToken cancellationToken)
    {
        var logged = false;
        while (true)
        {
            try
            {
                return new MigrationGuard(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
            }
            catch (IOException) when (File.Exists(path))
            {
                // Held by another process (or another server in this one) that is migrating the same file.
                if (!logged)
                {
                    LogWaiting(log, path);
                    logged = true;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken);
            }
        }
    }

    public void Dispose() => _file.Dispose();

    [LoggerMessage(Level = LogLevel.Information, Message = "another server is migrating this database ({Path} is locked); waiting for it")]
    private static partial void LogWaiting(ILogger logger, string path);
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
