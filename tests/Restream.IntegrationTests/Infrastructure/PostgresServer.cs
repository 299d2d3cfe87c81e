namespace Restream.IntegrationTests.Infrastructure;

/// <summary>
/// A private PostgreSQL cluster (Debian's postgresql package) in a temp folder on a free loopback
/// port, started by initdb and pg_ctl for one test class and removed after. As root it runs as the
/// postgres user, since PostgreSQL refuses to run as root.
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    private readonly string _bin;
    private readonly string _dir;
    private readonly bool _asPostgresUser;

    private PostgresServer(string bin, string dir, int port, bool asPostgresUser)
    {
        _bin = bin;
        _dir = dir;
        Port = port;
        _asPostgresUser = asPostgresUser;
    }

    public int Port { get; }

    public string ConnectionString(string database) => $"Host=127.0.0.1;Port={Port};Username=restream;Password=restream-test;Database={database}";

    public static async Task<PostgresServer> StartAsync()
    {
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "initdb"))).OrderDescending().FirstOrDefault()
            : null;
        if (bin is null)
        {
            throw new InvalidOperationException("PostgreSQL is not installed: apt-get install postgresql (the test command does this)");
        }

        var root = Environment.UserName == "root";
        var dir = Path.Combine("/tmp", $"restream-pg-{Guid.NewGuid():N}"[..24]);
        Directory.CreateDirectory(dir);
        var server = new PostgresServer(bin, dir, TestPorts.GetFreeTcpPort(), root);
        if (root)
        {
            await RunAsync("chown", ["-R", "postgres:postgres", dir]);
        }

        var password = Path.Combine(dir, "pw");
        await File.WriteAllTextAsync(password, "restream-test\n");
        if (root)
        {
            await RunAsync("chown", ["postgres:postgres", password]);
        }

        await server.RunPgAsync("initdb", ["-D", Path.Combine(dir, "data"), "-U", "restream", "--pwfile", password, "-A", "scram-sha-256", "--no-sync"]);
        await server.RunPgAsync("pg_ctl", ["-D", Path.Combine(dir, "data"), "-l", Path.Combine(dir, "log"), "-w", "-t", "30",
            "-o", $"-p {server.Port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start"]);
        return server;
    }

    private Task RunPgAsync(string tool, IEnumerable<string> args) =>
        _asPostgresUser
            ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_bin, tool), .. args])
            : RunAsync(Path.Combine(_bin, tool), args);

    private static async Task RunAsync(string file, IEnumerable<string> args)
    {
        var (code, output) = await ExternalProcess.RunAsync(file, args, TimeSpan.FromSeconds(60));
        if (code != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({code}): {output}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await RunPgAsync("pg_ctl", ["-D", Path.Combine(_dir, "data"), "-m", "immediate", "-w", "stop"]);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }

        Directory.Delete(_dir, recursive: true);
    }
}
