using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Restream.IntegrationTests.Infrastructure;

namespace Restream.IntegrationTests;

/// <summary>
/// The operator's side of the metrics: the Grafana dashboard, the Prometheus scrape configuration and
/// the alert rules in <c>grafana/</c>, checked against what a live server really exports, through a real
/// Prometheus that scrapes it. (Grafana itself is not run: the dashboard is checked panel by panel,
/// each query evaluated by Prometheus the way Grafana would send it.)
/// </summary>
public sealed partial class DashboardTests(ApiNginxFixture nginx) : IClassFixture<ApiNginxFixture>
{
    private static readonly string Folder = Path.Combine(AppContext.BaseDirectory, "grafana");

    /// <summary>What Grafana puts in place of the dashboard's variables when every node and channel is chosen.</summary>
    private static string AsGrafanaSends(string expr) => expr
        .Replace("$__rate_interval", "10s", StringComparison.Ordinal)
        .Replace("$instance", ".*", StringComparison.Ordinal)
        .Replace("$channel", ".*", StringComparison.Ordinal);

    [Fact]
    public async Task Dashboard_and_alerts_query_what_a_live_server_exports_through_a_real_prometheus()
    {
        var dashboard = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(Folder, "dashboards", "restream.json"))).RootElement;
        var panels = Panels(dashboard).ToList();
        CheckLayout(dashboard, panels);

        var targets = panels.Where(p => p.GetProperty("type").GetString() != "row")
            .SelectMany(p => p.GetProperty("targets").EnumerateArray().Select(t => (Panel: p.GetProperty("title").GetString()!, Expr: t.GetProperty("expr").GetString()!)))
            .ToList();
        var variables = dashboard.GetProperty("templating").GetProperty("list").EnumerateArray()
            .Where(v => v.GetProperty("type").GetString() == "query")
            .Select(v => (Name: v.GetProperty("name").GetString()!, Query: v.GetProperty("definition").GetString()!))
            .ToList();
        var alerts = AlertExpressions(await File.ReadAllTextAsync(Path.Combine(Folder, "alerts.yml")));
        Assert.True(targets.Count >= 20, $"only {targets.Count} queries in the dashboard");
        Assert.True(alerts.Count >= 5, $"only {alerts.Count} alert expressions read from alerts.yml");

        // Prometheus's own checks of the files as shipped.
        var (configCode, configOutput) = await ExternalProcess.RunAsync("promtool", ["check", "config", Path.Combine(Folder, "prometheus.yml")], TimeSpan.FromSeconds(30));
        Assert.True(configCode == 0, configOutput);
        var (rulesCode, rulesOutput) = await ExternalProcess.RunAsync("promtool", ["check", "rules", Path.Combine(Folder, "alerts.yml")], TimeSpan.FromSeconds(30));
        Assert.True(rulesCode == 0, rulesOutput);

        // A live channel with a destination that takes the stream, one that is down, and one that refuses
        // its key (another Restream server's ingest: it answers a wrong key with BadName).
        await using var refuser = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "elsewhere",
            ["Restream:Channels:0:StreamKey"] = "elsewhere_key_81",
        });
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "dashboard",
            ["Restream:Channels:0:StreamKey"] = "dashboard_secret_key_77",
            ["Restream:Channels:0:Destinations:0:Name"] = "mirror",
            ["Restream:Channels:0:Destinations:0:Url"] = nginx.Nginx.Url("second"),
            ["Restream:Channels:0:Destinations:0:Key"] = "mirror_key_78",
            ["Restream:Channels:0:Destinations:1:Name"] = "nowhere",
            ["Restream:Channels:0:Destinations:1:Url"] = $"rtmp://127.0.0.1:{TestPorts.GetFreeTcpPort()}/live",
            ["Restream:Channels:0:Destinations:1:Key"] = "nowhere_key_79",
            ["Restream:Channels:0:Destinations:2:Name"] = "refusing",
            ["Restream:Channels:0:Destinations:2:Url"] = $"rtmp://127.0.0.1:{refuser.RtmpPort}/live",
            ["Restream:Channels:0:Destinations:2:Key"] = "not_the_key_80",
        });
        await using var publisher = Ffmpeg.Publish(server.PublishUrl("dashboard_secret_key_77"), 60, size: "640x360", bitrateKbps: 800);
        Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("dashboard").Any(d => d.Name == "mirror" && d.State == Relay.DestinationState.Live), TimeSpan.FromSeconds(15)),
            "the mirror destination did not go live");
        Assert.True(await TestPorts.EventuallyAsync(() => server.Relay.GetDestinations("dashboard").Any(d => d.Name == "refusing" && d.State == Relay.DestinationState.Failed), TimeSpan.FromSeconds(15)),
            "the refusing destination was not refused");

        using var http = server.Http(apiKey: null);
        var scrape = await http.GetStringAsync("/metrics");
        var types = Types(scrape);
        var samples = PrometheusText.Parse(scrape);

        // Every series named anywhere exists on a live server, with the labels the queries group by,
        // and a counter or histogram is only ever read through rate() or increase().
        foreach (var (where, expr) in targets.Select(t => ($"panel '{t.Panel}'", t.Expr))
                     .Concat(variables.Select(v => ($"variable '{v.Name}'", v.Query)))
                     .Concat(alerts.Select(a => ($"alert expression `{a}`", a))))
        {
            foreach (var use in MetricUses(expr))
            {
                var family = Family(use.Name, types);
                Assert.True(family is not null, $"{where} reads {use.Name}, which the server does not export");
                if (types[family!] is "counter" or "histogram")
                {
                    Assert.True(use.InRate, $"{where} reads the {types[family!]} {use.Name} without rate() or increase(): `{expr}`");
                }

                var labelled = samples.Where(s => Family(s.Name, types) == family).ToList();
                foreach (var label in LabelsUsed(expr).Where(l => l is not ("instance" or "job" or "le")))
                {
                    Assert.True(labelled.Count == 0 || labelled.Any(s => s.Labels.ContainsKey(label)),
                        $"{where} uses the label '{label}', which {family} does not carry");
                }
            }
        }

        // A real Prometheus, configured from grafana/prometheus.yml, scraping this server every second.
        var configuration = await File.ReadAllTextAsync(Path.Combine(Folder, "prometheus.yml"));
        foreach (var (from, to) in new[]
                 {
                     ("scrape_interval: 10s", "scrape_interval: 1s"), ("evaluation_interval: 10s", "evaluation_interval: 1s"),
                     ("\"localhost:8080\"", $"\"127.0.0.1:{server.HttpAddress.Port}\""), ("- alerts.yml", $"- {Path.Combine(Folder, "alerts.yml")}"),
                 })
        {
            Assert.Contains(from, configuration);
            configuration = configuration.Replace(from, to, StringComparison.Ordinal);
        }

        await using var prometheus = await PrometheusServer.StartAsync(configuration);
        var scraped = await TestPorts.EventuallyAsync(async () =>
            await prometheus.ValueAsync("count_over_time(restream_stream_received_frames_total{channel=\"dashboard\"}[10s])") >= 6, TimeSpan.FromSeconds(40));
        Assert.True(scraped, $"Prometheus did not scrape the server: {prometheus.Log}");

        var exported = samples.Select(s => Family(s.Name, types)).OfType<string>().ToHashSet();
        foreach (var (panel, expr) in targets)
        {
            JsonElement result;
            try
            {
                result = await prometheus.QueryAsync(AsGrafanaSends(expr));
            }
            catch (InvalidOperationException e)
            {
                throw new Xunit.Sdk.XunitException($"panel '{panel}': {e.Message}");
            }

            // Series that exist (every one the query reads has samples now) must show on the panel.
            if (MetricUses(expr).All(u => exported.Contains(Family(u.Name, types)!)))
            {
                Assert.True(result.GetArrayLength() > 0, $"panel '{panel}' shows nothing although its series exist: `{expr}`");
            }
        }

        // The state panel tells the three destinations apart: live 1, connecting 2 or retrying 3, refused 4.
        var (_, stateQuery) = targets.Single(t => t.Panel == "Destination state");
        var states = (await prometheus.QueryAsync(AsGrafanaSends(stateQuery))).EnumerateArray().ToDictionary(
            r => r.GetProperty("metric").GetProperty("destination").GetString()!, r => r.GetProperty("value")[1].GetString());
        Assert.Equal("1", states["mirror"]);
        Assert.Contains(states["nowhere"], new[] { "2", "3" });
        Assert.Equal("4", states["refusing"]);

        // The variables list this node and this channel.
        var channels = await prometheus.QueryAsync("group by (channel) (restream_stream_uptime_seconds{instance=~\".*\"})");
        Assert.Contains(channels.EnumerateArray(), r => r.GetProperty("metric").GetProperty("channel").GetString() == "dashboard");
        Assert.Contains(variables, v => v.Query.Contains("restream_stream_uptime_seconds", StringComparison.Ordinal) && v.Query.EndsWith(", channel)", StringComparison.Ordinal));
        Assert.Equal(1, await prometheus.ValueAsync($"count(restream_ingest_connections_open{{instance=\"127.0.0.1:{server.HttpAddress.Port}\"}})"));

        // The alert rules load, evaluate without error, and the ones for a destination that is down or
        // refused each pick that destination and no other (pending: they fire after a minute or two).
        var evaluated = await TestPorts.EventuallyAsync(async () => (await prometheus.RulesAsync()).All(r => r.GetProperty("health").GetString() == "ok"), TimeSpan.FromSeconds(20));
        var rules = await prometheus.RulesAsync();
        Assert.True(evaluated, string.Join("; ", rules.Select(r => $"{r.GetProperty("name")}: {r.GetProperty("health")} {(r.TryGetProperty("lastError", out var e) ? e.ToString() : "")}")));
        Assert.Equal(alerts.Count, rules.Count);
        var down = rules.Single(r => r.GetProperty("name").GetString() == "RestreamDestinationDown");
        var active = down.GetProperty("alerts").EnumerateArray().Select(a => a.GetProperty("labels").GetProperty("destination").GetString()).ToList();
        Assert.Equal(["nowhere"], active);
        var refused = rules.Single(r => r.GetProperty("name").GetString() == "RestreamDestinationRefused");
        Assert.Equal(["refusing"], refused.GetProperty("alerts").EnumerateArray().Select(a => a.GetProperty("labels").GetProperty("destination").GetString()).ToList());
        var internalErrors = rules.Single(r => r.GetProperty("name").GetString() == "RestreamInternalError");
        Assert.Empty(internalErrors.GetProperty("alerts").EnumerateArray());
        Assert.DoesNotContain("secret_key", scrape);
    }

    private static void CheckLayout(JsonElement dashboard, List<JsonElement> panels)
    {
        Assert.False(string.IsNullOrWhiteSpace(dashboard.GetProperty("uid").GetString()));
        Assert.False(string.IsNullOrWhiteSpace(dashboard.GetProperty("title").GetString()));
        var ids = panels.Select(p => p.GetProperty("id").GetInt32()).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        var cells = new HashSet<(int X, int Y)>();
        foreach (var panel in panels)
        {
            var title = panel.GetProperty("title").GetString();
            var grid = panel.GetProperty("gridPos");
            var (x, y, w, h) = (grid.GetProperty("x").GetInt32(), grid.GetProperty("y").GetInt32(), grid.GetProperty("w").GetInt32(), grid.GetProperty("h").GetInt32());
            Assert.True(x >= 0 && w > 0 && x + w <= 24 && h > 0, $"panel '{title}' lies outside the 24 columns");
            for (var i = x; i < x + w; i++)
            {
                for (var j = y; j < y + h; j++)
                {
                    Assert.True(cells.Add((i, j)), $"panel '{title}' overlaps another at {i},{j}");
                }
            }

            if (panel.GetProperty("type").GetString() == "row")
            {
                continue;
            }

            Assert.False(string.IsNullOrWhiteSpace(panel.GetProperty("description").GetString()), $"panel '{title}' has no description");
            Assert.Equal("${datasource}", panel.GetProperty("datasource").GetProperty("uid").GetString());
            Assert.NotEmpty(panel.GetProperty("targets").EnumerateArray());
            foreach (var target in panel.GetProperty("targets").EnumerateArray())
            {
                Assert.Equal("${datasource}", target.GetProperty("datasource").GetProperty("uid").GetString());
                Assert.Contains("instance=~\"$instance\"", target.GetProperty("expr").GetString()); // the node picker applies everywhere
            }
        }
    }

    private static IEnumerable<JsonElement> Panels(JsonElement dashboard)
    {
        foreach (var panel in dashboard.GetProperty("panels").EnumerateArray())
        {
            yield return panel;
            if (panel.TryGetProperty("panels", out var nested))
            {
                foreach (var inner in nested.EnumerateArray())
                {
                    yield return inner;
                }
            }
        }
    }

    /// <summary>The <c>expr:</c> of every rule in a Prometheus rule file (one line each, as ours are written).</summary>
    private static List<string> AlertExpressions(string rules) =>
        [.. ExprLine().Matches(rules).Select(m => m.Groups[1].Value.Trim())];

    /// <summary>Metric family of each <c># TYPE</c> line.</summary>
    private static Dictionary<string, string> Types(string scrape) =>
        scrape.Split('\n').Where(l => l.StartsWith("# TYPE ", StringComparison.Ordinal)).Select(l => l.Split(' '))
            .ToDictionary(p => p[2], p => p[3].Trim());

    /// <summary>The family a series name belongs to (a histogram's <c>_bucket</c>, <c>_sum</c>, <c>_count</c>), or null.</summary>
    private static string? Family(string name, Dictionary<string, string> types)
    {
        if (types.ContainsKey(name))
        {
            return name;
        }

        foreach (var suffix in new[] { "_bucket", "_sum", "_count" })
        {
            if (name.EndsWith(suffix, StringComparison.Ordinal) && types.TryGetValue(name[..^suffix.Length], out var type) && type is "histogram" or "summary")
            {
                return name[..^suffix.Length];
            }
        }

        return null;
    }

    /// <summary>
    /// Our series in a PromQL expression (names that start <c>restream_</c>, <c>process_</c>, <c>dotnet_</c>), each
    /// with whether a <c>rate</c>, <c>irate</c> or <c>increase</c> encloses it. Strings are skipped.
    /// </summary>
    private static List<(string Name, bool InRate)> MetricUses(string expr)
    {
        var uses = new List<(string, bool)>();
        var calls = new Stack<string>();
        var word = new StringBuilder();
        var last = string.Empty;
        for (var i = 0; i < expr.Length; i++)
        {
            var c = expr[i];
            if (c == '"')
            {
                var end = expr.IndexOf('"', i + 1);
                if (end < 0)
                {
                    break;
                }

                i = end;
                continue;
            }

            if (char.IsLetterOrDigit(c) || c is '_' or ':')
            {
                word.Append(c);
                continue;
            }

            if (word.Length > 0)
            {
                last = word.ToString();
                word.Clear();
                if (Ours().IsMatch(last))
                {
                    uses.Add((last, calls.Any(f => f is "rate" or "irate" or "increase")));
                }
            }

            if (c == '(')
            {
                calls.Push(expr[..i].TrimEnd().EndsWith(last, StringComparison.Ordinal) ? last : string.Empty);
            }
            else if (c == ')' && calls.Count > 0)
            {
                calls.Pop();
            }
            else if (!char.IsWhiteSpace(c))
            {
                last = string.Empty;
            }
        }

        if (word.Length > 0 && Ours().IsMatch(word.ToString()))
        {
            uses.Add((word.ToString(), false));
        }

        return uses;
    }

    /// <summary>Label names an expression groups or matches by: <c>by (…)</c>, <c>on (…)</c>, <c>{label=…}</c>.</summary>
    private static IEnumerable<string> LabelsUsed(string expr) =>
        Grouping().Matches(expr).SelectMany(m => m.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            .Concat(Matcher().Matches(expr).Select(m => m.Groups[1].Value))
            .Concat(LabelValues().Matches(expr).Select(m => m.Groups[1].Value))
            .Distinct();

    [GeneratedRegex(@"^\s*expr:\s*(.+)$", RegexOptions.Multiline)]
    private static partial Regex ExprLine();

    [GeneratedRegex("^(restream|process|dotnet)_[a-z0-9_]+$")]
    private static partial Regex Ours();

    [GeneratedRegex(@"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")]
    private static partial Regex Grouping();

    [GeneratedRegex(@"[{,]\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")]
    private static partial Regex Matcher();

    [GeneratedRegex(@"label_values\([^,]*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")]
    private static partial Regex LabelValues();
}
