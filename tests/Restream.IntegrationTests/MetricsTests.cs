using System.Globalization;
using System.Text.RegularExpressions;
using Restream.IntegrationTests.Infrastructure;

namespace Restream.IntegrationTests;

/// <summary>A Prometheus text-format (0.0.4) sample: name, labels, value.</summary>
public sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

public static partial class PrometheusText
{
    [GeneratedRegex("""^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})?\s+(?<value>\S+)(\s+\d+)?$""")]
    private static partial Regex Line();

    [GeneratedRegex("""(?<k>[a-zA-Z_][a-zA-Z0-9_]*)="(?<v>(\\.|[^"\\])*)",?""")]
    private static partial Regex Label();

    /// <summary>Parses the exposition format strictly: every sample line must parse and have a TYPE.</summary>
    public static List<Sample> Parse(string text)
    {
        var types = new Dictionary<string, string>();
        var samples = new List<Sample>();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0)
            {
                continue;
            }

            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ');
                types[parts[2]] = parts[3];
                continue;
            }

            if (line.StartsWith('#'))
            {
                continue;
            }

            var match = Line().Match(line);
            Assert.True(match.Success, $"not a Prometheus sample line: {line}");
            var name = match.Groups["name"].Value;
            Assert.True(types.ContainsKey(name) || types.Keys.Any(t => name.StartsWith(t + "_", StringComparison.Ordinal)), $"no TYPE for {name}");
            var labels = Label().Matches(match.Groups["labels"].Value).ToDictionary(m => m.Groups["k"].Value, m => m.Groups["v"].Value);
            samples.Add(new Sample(name, labels, double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture)));
        }

        return samples;
    }

    public static double Value(this List<Sample> samples, string name, params (string Key, string Value)[] labels) =>
        samples.Single(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).Value;
}

public sealed class MetricsTests(ApiNginxFixture nginx) : IClassFixture<ApiNginxFixture>
{
    [Fact]
    public async Task Metrics_scraped_while_live_move_and_carry_no_secret()
    {
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "metered",
            ["Restream:Channels:0:StreamKey"] = "metered_secret_key_42",
            ["Restream:Channels:0:Destinations:0:Name"] = "mirror",
            ["Restream:Channels:0:Destinations:0:Url"] = nginx.Nginx.Url("third"),
            ["Restream:Channels:0:Destinations:0:Key"] = "mirror_secret_key_43",
        });
        using var http = server.Http(apiKey: null);

        // A wrong key first: counted.
        await Assert.ThrowsAsync<Relay.DestinationRejectedException>(() => Relay.RtmpPublishClient.ConnectAsync(
            new Relay.PublishTarget(new Uri($"rtmp://127.0.0.1:{server.RtmpPort}/live"), "wrong_key_000000"), null, TimeProvider.System, CancellationToken.None));

        await using var publisher = Ffmpeg.Publish(server.PublishUrl("metered_secret_key_42"), 10);
        Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("metered") is [{ State: Relay.DestinationState.Live }], TimeSpan.FromSeconds(10)));
        await Task.Delay(1000);
        var first = await http.GetStringAsync("/metrics");
        await Task.Delay(2000);
        var second = await http.GetStringAsync("/metrics");
        var a = PrometheusText.Parse(first);
        var b = PrometheusText.Parse(second);

        Assert.Equal(1, b.Value("restream_live_streams"));
        Assert.True(b.Value("restream_ingest_auth_failures_total") >= 1);
        Assert.Equal(1, b.Value("restream_ingest_connections_open")); // the publisher; the refused one is closed
        foreach (var name in new[] { "restream_stream_received_frames_total", "restream_stream_received_bytes_total" })
        {
            Assert.True(b.Value(name, ("channel", "metered")) > a.Value(name, ("channel", "metered")), $"{name} did not move");
        }

        foreach (var name in new[] { "restream_destination_sent_frames_total", "restream_destination_sent_bytes_total" })
        {
            Assert.True(b.Value(name, ("channel", "metered"), ("destination", "mirror")) > a.Value(name, ("channel", "metered"), ("destination", "mirror")), $"{name} did not move");
        }

        Assert.Equal(1, b.Value("restream_destination_up", ("channel", "metered"), ("destination", "mirror")));
        foreach (var state in new[] { "idle", "connecting", "live", "retrying", "failed" })
        {
            Assert.Equal(state == "live" ? 1 : 0, b.Value("restream_destination_state", ("channel", "metered"), ("destination", "mirror"), ("state", state)));
        }

        Assert.InRange(b.Value("restream_stream_bitrate_kbps", ("channel", "metered")), 1000, 10000);
        Assert.DoesNotContain("secret_key", second);
        Assert.DoesNotContain("wrong_key", second);

        // Health endpoints answer without a key.
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
        var openApi = await http.GetStringAsync("/openapi/v1.json");
        Assert.Contains("/api/v1/channels", openApi);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/api/reference")).StatusCode);
    }
}
