using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Restream.Ingest.Hub;
using Restream.Ingest.Rtmp;
using Restream.Relay;
using Restream.Server;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>Our real server, all roles in this process, on free loopback ports, with its log kept.</summary>
public sealed class RestreamServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private RestreamServer(WebApplication app, int rtmpPort, CapturedLog log)
    {
        _app = app;
        RtmpPort = rtmpPort;
        Log = log;
    }

    /// <summary>The admin API key every test server is bootstrapped with.</summary>
    public const string AdminKey = "rsk_testadmin0_0123456789abcdefghijABCDEFGHIJ01";

    public int RtmpPort { get; }

    /// <summary>The HTTP base address (API, health, metrics).</summary>
    public Uri HttpAddress => new(_app.Urls.First());

    public HttpClient Http(string? apiKey = AdminKey)
    {
        var client = new HttpClient { BaseAddress = HttpAddress, Timeout = TimeSpan.FromSeconds(30) };
        if (apiKey is not null)
        {
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", apiKey);
        }

        return client;
    }
    public CapturedLog Log { get; }
    public IServiceProvider Services => _app.Services;
    public StreamRegistry Streams => Services.GetRequiredService<StreamRegistry>();
    public RelayService Relay => Services.GetRequiredService<RelayService>();
    public IngestCounters Counters => Services.GetRequiredService<IngestCounters>();

    public string PublishUrl(string key) => $"rtmp://127.0.0.1:{RtmpPort}/live/{key}";

    public static async Task<RestreamServer> StartAsync(IDictionary<string, string?> settings)
    {
        var rtmpPort = TestPorts.GetFreeTcpPort();
        var dataDir = TestPorts.NewTempDirectory("data");
        var args = new List<string>
        {
            $"--Restream:Rtmp:Port={rtmpPort}", "--Restream:Rtmp:Address=127.0.0.1", "--urls=http://127.0.0.1:0",
            $"--Restream:Database=Data Source={Path.Combine(dataDir, "restream.db")}",
            $"--Restream:DataProtectionKeys={Path.Combine(dataDir, "keys")}",
            $"--Restream:Api:BootstrapApiKey={AdminKey}",
        };
        args.AddRange(settings.Select(kv => $"--{kv.Key}={kv.Value}"));
        // Settings given by the test win over the defaults above (the last value of a key counts).
        var log = new CapturedLog();
        var app = RestreamApp.Build([.. args], b => b.Logging.AddProvider(log));
        await app.StartAsync();
        // Listeners bind on the background services' own threads (.NET 10 starts ExecuteAsync off the caller's
        // thread): wait for every one that is configured, or a test's publisher can beat it and be refused.
        var rtmp = app.Services.GetRequiredService<RtmpServer>();
        await rtmp.BoundEndpoint.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.WhenAll(rtmp.BoundTlsEndpoint, app.Services.GetRequiredService<Restream.Ingest.Srt.SrtServer>().BoundEndpoint)
            .WaitAsync(TimeSpan.FromSeconds(10));
        return new RestreamServer(app, rtmpPort, log);
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _app.StopAsync(cts.Token);
        await _app.DisposeAsync();
    }
}

/// <summary>Every log line the server wrote, so tests can check what it says (and never says).</summary>
public sealed class CapturedLog : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyList<string> Lines => [.. _lines];

    public string Text => string.Join('\n', _lines);

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(CapturedLog owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
    }
}
