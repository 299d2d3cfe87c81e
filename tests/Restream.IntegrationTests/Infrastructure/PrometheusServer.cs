using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>A real Prometheus (Debian's <c>prometheus</c>) on a free loopback port, its data in a temporary folder, stopped on dispose.</summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    private readonly ExternalProcess _process;
    private readonly HttpClient _http;

    private PrometheusServer(ExternalProcess process, int port)
    {
        _process = process;
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
    }

    /// <summary>Starts Prometheus with this configuration (YAML), written beside its data.</summary>
    public static async Task<PrometheusServer> StartAsync(string configuration)
    {
        var port = TestPorts.GetFreeTcpPort();
        var dir = TestPorts.NewTempDirectory("prometheus");
        var config = Path.Combine(dir, "prometheus.yml");
        await File.WriteAllTextAsync(config, configuration);
        var process = ExternalProcess.Start("prometheus",
        [
            $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(dir, "data")}",
            $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ]);
        var server = new PrometheusServer(process, port);
        try
        {
            await TestPorts.WaitForTcpAsync(port, TimeSpan.FromSeconds(20));
        }
        catch (Exception e)
        {
            await server.DisposeAsync();
            throw new InvalidOperationException($"prometheus did not start: {process.Tail()}", e);
        }

        return server;
    }

    public string Log => _process.Tail();

    /// <summary>An instant query: the <c>data.result</c> vector. A query Prometheus refuses throws with its error.</summary>
    public async Task<JsonElement> QueryAsync(string promQl)
    {
        var response = await _http.GetAsync($"/api/v1/query?query={Uri.EscapeDataString(promQl)}");
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        if (body.GetProperty("status").GetString() != "success")
        {
            throw new InvalidOperationException($"Prometheus refused `{promQl}`: {body.GetProperty("error").GetString()}");
        }

        return body.GetProperty("data").GetProperty("result");
    }

    /// <summary>The first sample's value of an instant query, or null when the result is empty.</summary>
    public async Task<double?> ValueAsync(string promQl)
    {
        var result = await QueryAsync(promQl);
        return result.GetArrayLength() == 0
            ? null
            : double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
    }

    /// <summary><c>GET /api/v1/rules</c>: every rule of every group.</summary>
    public async Task<IReadOnlyList<JsonElement>> RulesAsync()
    {
        var body = await _http.GetFromJsonAsync<JsonElement>("/api/v1/rules");
        return [.. body.GetProperty("data").GetProperty("groups").EnumerateArray().SelectMany(g => g.GetProperty("rules").EnumerateArray())];
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _process.DisposeAsync();
    }
}
