using System.Globalization;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>A real redis-server on a free loopback port, nothing persisted, stopped on dispose.</summary>
public sealed class RedisServer : IAsyncDisposable
{
    private readonly ExternalProcess _process;

    private RedisServer(ExternalProcess process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public string Url => $"redis://127.0.0.1:{Port}";

    public static async Task<RedisServer> StartAsync()
    {
        var port = TestPorts.GetFreeTcpPort();
        var dir = TestPorts.NewTempDirectory("redis");
        var process = ExternalProcess.Start("redis-server",
        [
            "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", dir, "--protected-mode", "yes",
        ]);
        await TestPorts.WaitForTcpAsync(port, TimeSpan.FromSeconds(10));
        return new RedisServer(process, port);
    }

    public async Task<string> CliAsync(params string[] args)
    {
        var (_, output) = await ExternalProcess.RunAsync("redis-cli", ["-p", Port.ToString(CultureInfo.InvariantCulture), .. args], TimeSpan.FromSeconds(10));
        return output.Trim();
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
