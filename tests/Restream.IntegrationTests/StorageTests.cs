using System.Net;
using System.Net.Http.Json;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Restream.IntegrationTests.Infrastructure;
using Restream.Server.Storage;

namespace Restream.IntegrationTests;

/// <summary>The embedded SQLite store across restarts, including the ones that follow a crash.</summary>
public sealed class StorageTests
{
    [Fact]
    public async Task A_server_killed_while_migrating_starts_again_with_its_channels()
    {
        var dir = TestPorts.NewTempDirectory("store");
        var database = Path.Combine(dir, "restream.db");
        var settings = new Dictionary<string, string?> { ["Restream:Database"] = $"Data Source={database}" };
        await using (var first = await RestreamServer.StartAsync(settings))
        {
            using var http = first.Http();
            (await http.PostAsJsonAsync("/api/v1/channels", new { name = "survivor" })).EnsureSuccessStatusCode();
        }

        // What EF Core leaves in the file when the process is killed between taking its migration lock
        // and releasing it (reproduced by SIGKILL during start-up): without clearing it, every later
        // start waits for the lock forever.
        LeaveMigrationLock(database);

        var start = RestreamServer.StartAsync(settings);
        var finished = await Task.WhenAny(start, Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.True(finished == start, "the server did not start with the lock a killed start left behind");
        await using var second = await start;
        Assert.Contains("removed the database's migration lock", second.Log.Text);
        using var client = second.Http();
        var channels = await client.GetStringAsync("/api/v1/channels");
        Assert.Contains("survivor", channels);
        Assert.Equal(0, CountLockRows(database));
    }

    [Fact]
    public async Task A_server_waits_for_another_one_migrating_the_same_file()
    {
        var dir = TestPorts.NewTempDirectory("store");
        var database = Path.Combine(dir, "restream.db");
        var settings = new Dictionary<string, string?> { ["Restream:Database"] = $"Data Source={database}" };

        // Another server is migrating: it holds the guard (and so its lock row is not stale).
        var other = await MigrationGuard.AcquireAsync(database + ".migrating", NullLogger.Instance, CancellationToken.None);
        var start = RestreamServer.StartAsync(settings);
        try
        {
            // A server starts in a second or two here; it must still be waiting after three.
            await Task.Delay(TimeSpan.FromSeconds(3));
            Assert.False(start.IsCompleted, "the server started while another one held the database's migration guard");
            Assert.False(HasTable(database, "__EFMigrationsHistory"), "the server migrated while another one held the guard");
        }
        finally
        {
            other.Dispose();
        }

        await using var server = await start.WaitAsync(TimeSpan.FromSeconds(60));
        using var http = server.Http();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/v1/channels")).StatusCode);
    }

    private static void LeaveMigrationLock(string database)
    {
        using var connection = new SqliteConnection($"Data Source={database};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            CREATE TABLE IF NOT EXISTS "__EFMigrationsLock" ("Id" INTEGER NOT NULL CONSTRAINT "PK___EFMigrationsLock" PRIMARY KEY, "Timestamp" TEXT NOT NULL);
            INSERT OR IGNORE INTO "__EFMigrationsLock"("Id", "Timestamp") VALUES (1, '2026-12-02 17:04:09.2531189+00:00');
            """;
        command.ExecuteNonQuery();
    }

    private static bool HasTable(string database, string table)
    {
        if (!File.Exists(database))
        {
            return false;
        }

        using var connection = new SqliteConnection($"Data Source={database};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $name";
        command.Parameters.AddWithValue("$name", table);
        return (long)command.ExecuteScalar()! > 0;
    }

    private static long CountLockRows(string database)
    {
        using var connection = new SqliteConnection($"Data Source={database};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM \"__EFMigrationsLock\"";
        return (long)command.ExecuteScalar()!;
    }
}
