using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Restream.IntegrationTests.Infrastructure;

namespace Restream.IntegrationTests;

/// <summary>nginx-rtmp destinations shared by the API tests of both stores.</summary>
public sealed class ApiNginxFixture : IAsyncLifetime
{
    public NginxRtmp Nginx { get; } = new(["first", "second", "third"]);
    public Task InitializeAsync() => Nginx.StartAsync();
    public Task DisposeAsync() => Nginx.DisposeAsync().AsTask();
}

public sealed class PostgresFixture : IAsyncLifetime
{
    public PostgresServer Server { get; private set; } = null!;
    public async Task InitializeAsync() => Server = await PostgresServer.StartAsync();
    public Task DisposeAsync() => Server.DisposeAsync().AsTask();
}

/// <summary>The admin API driven over HTTP the way an admin's script would, against a real store.</summary>
public abstract class ApiTestsBase(ApiNginxFixture nginx)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>The store's connection string, or null for the default SQLite file.</summary>
    protected abstract string? Database(string name);

    private Task<RestreamServer> StartAsync(string name) => RestreamServer.StartAsync(new Dictionary<string, string?>(
        Database(name) is { } db ? [new("Restream:Database", db)] : []));

    private static async Task<JsonElement> ReadAsync(HttpResponseMessage response, HttpStatusCode expected)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode} {response.StatusCode}: {body}");
        return body.Length == 0 ? default : JsonDocument.Parse(body).RootElement.Clone();
    }

    [Fact]
    public async Task Channel_made_through_the_api_goes_live_and_follows_destination_changes_within_a_second()
    {
        await using var server = await StartAsync("live");
        using var http = server.Http();
        var channel = await ReadAsync(await http.PostAsJsonAsync("/api/v1/channels", new { name = "show" }), HttpStatusCode.Created);
        var channelId = channel.GetProperty("id").GetString();
        var streamKey = channel.GetProperty("streamKey").GetString()!;
        Assert.StartsWith("live_", streamKey);

        var steady = await ReadAsync(await http.PostAsJsonAsync($"/api/v1/channels/{channelId}/destinations",
            new { name = "steady", platform = "custom", url = nginx.Nginx.Url("first"), key = "steady-dest-key-1234" }), HttpStatusCode.Created);
        Assert.Equal("…1234", steady.GetProperty("keyHint").GetString());

        const int seconds = 14;
        DestinationView? Find(string name) => server.Relay.GetDestinations("show").Select(d => new DestinationView(d.Name, d.State.ToString())).FirstOrDefault(d => d.Name == name);
        await using (var publisher = Ffmpeg.Publish(server.PublishUrl(streamKey), seconds))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => Find("steady")?.State == "Live", TimeSpan.FromSeconds(10)), server.Log.Text);
            await Task.Delay(2000);

            // Add a destination while live: it is pushing within a second.
            var added = await ReadAsync(await http.PostAsJsonAsync($"/api/v1/channels/{channelId}/destinations",
                new { name = "added", url = nginx.Nginx.Url("second") + "/added-live-key-5678" }), HttpStatusCode.Created);
            Assert.True(await TestPorts.EventuallyAsync(() => Find("added")?.State == "Live", TimeSpan.FromSeconds(1)), "added destination not live within 1 s");

            var streams = await ReadAsync(await http.GetAsync("/api/v1/streams"), HttpStatusCode.OK);
            var live = Assert.Single(streams.EnumerateArray());
            Assert.Equal(("show", "H264", 1280, 720), (live.GetProperty("channel").GetString(), live.GetProperty("videoCodec").GetString(),
                live.GetProperty("width").GetInt32(), live.GetProperty("height").GetInt32()));
            Assert.Equal(2, live.GetProperty("destinations").GetArrayLength());

            // Disable it: it stops within a second; the other is untouched.
            await Task.Delay(3000);
            await ReadAsync(await http.PatchAsJsonAsync($"/api/v1/channels/{channelId}/destinations/{added.GetProperty("id").GetString()}",
                new { enabled = false }), HttpStatusCode.OK);
            Assert.True(await TestPorts.EventuallyAsync(() => Find("added") is null, TimeSpan.FromSeconds(1)), "disabled destination still pushing after 1 s");
            Assert.Equal("Live", Find("steady")?.State);
            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(seconds + 30)));
        }

        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.LiveStreams.Count == 0, TimeSpan.FromSeconds(10)));
        var steadyRecording = nginx.Nginx.RecordingOf("first", "steady-dest-key-1234");
        Assert.True(await TestPorts.EventuallyAsync(() => File.Exists(steadyRecording), TimeSpan.FromSeconds(10)));
        await Task.Delay(500);
        var steadyVideo = Assert.Single(await Ffmpeg.ProbeAsync(steadyRecording, TimeSpan.FromSeconds(60)), s => s.CodecType == "video");
        Assert.Equal(seconds * Ffmpeg.Fps, steadyVideo.Frames);
        var addedVideo = Assert.Single(await Ffmpeg.ProbeAsync(nginx.Nginx.RecordingOf("second", "added-live-key-5678"), TimeSpan.FromSeconds(60)), s => s.CodecType == "video");
        Assert.InRange(addedVideo.Frames, 2 * Ffmpeg.Fps, (seconds - 4) * Ffmpeg.Fps);

        // The ended stream is recorded with its totals.
        JsonElement sessions = default;
        for (var i = 0; i < 50 && (sessions.ValueKind != JsonValueKind.Array || sessions.GetArrayLength() == 0); i++)
        {
            sessions = await ReadAsync(await http.GetAsync("/api/v1/sessions"), HttpStatusCode.OK);
            await Task.Delay(100);
        }

        var session = Assert.Single(sessions.EnumerateArray());
        Assert.Equal("show", session.GetProperty("channel").GetString());
        Assert.True(session.GetProperty("frames").GetInt64() > seconds * Ffmpeg.Fps);

        // Secrets: encrypted at rest, never in logs, never in listings.
        var factory = (Restream.Server.Storage.RestreamDbFactory)server.Services.GetService(typeof(Restream.Server.Storage.RestreamDbFactory))!;
        await using (var db = factory.Create())
        {
            var stored = db.Destinations.Select(d => d.ProtectedKey).ToList();
            Assert.Equal(2, stored.Count);
            Assert.All(stored, k => Assert.False(string.IsNullOrEmpty(k)));
            Assert.DoesNotContain(stored, k => k!.Contains("steady-dest-key-1234") || k.Contains("added-live-key-5678"));
            Assert.DoesNotContain(db.Channels.Select(c => c.StreamKeyHash).ToList(), h => Encoding.UTF8.GetString(h).Contains(streamKey));
        }

        // Secrets: never in logs, never in listings.
        var listing = await (await http.GetAsync($"/api/v1/channels/{channelId}/destinations")).Content.ReadAsStringAsync();
        foreach (var secret in new[] { streamKey, "steady-dest-key-1234", "added-live-key-5678" })
        {
            Assert.DoesNotContain(secret, server.Log.Text);
            Assert.DoesNotContain(secret, listing);
        }
    }

    private sealed record DestinationView(string Name, string State);

    [Fact]
    public async Task Rotated_key_starts_streams_and_the_old_one_no_longer_does()
    {
        await using var server = await StartAsync("rotate");
        using var http = server.Http();
        var channel = await ReadAsync(await http.PostAsJsonAsync("/api/v1/channels", new { name = "rot" }), HttpStatusCode.Created);
        var oldKey = channel.GetProperty("streamKey").GetString()!;
        var rotated = await ReadAsync(await http.PostAsync($"/api/v1/channels/{channel.GetProperty("id").GetString()}/rotate-key", null), HttpStatusCode.OK);
        var newKey = rotated.GetProperty("streamKey").GetString()!;
        Assert.NotEqual(oldKey, newKey);

        var target = (string key) => new Relay.PublishTarget(new Uri($"rtmp://127.0.0.1:{server.RtmpPort}/live"), key);
        await Assert.ThrowsAsync<Relay.DestinationRejectedException>(() => Relay.RtmpPublishClient.ConnectAsync(target(oldKey), null, TimeProvider.System, CancellationToken.None));
        await using var client = await Relay.RtmpPublishClient.ConnectAsync(target(newKey), null, TimeProvider.System, CancellationToken.None);
        Assert.NotNull(server.Streams.Find("rot"));
    }

    [Fact]
    public async Task Kicked_stream_ends_and_its_publisher_is_disconnected()
    {
        await using var server = await StartAsync("kick");
        using var http = server.Http();
        var channel = await ReadAsync(await http.PostAsJsonAsync("/api/v1/channels", new { name = "kickme" }), HttpStatusCode.Created);
        await using var client = await Relay.RtmpPublishClient.ConnectAsync(
            new Relay.PublishTarget(new Uri($"rtmp://127.0.0.1:{server.RtmpPort}/live"), channel.GetProperty("streamKey").GetString()!),
            null, TimeProvider.System, CancellationToken.None);
        Assert.NotNull(server.Streams.Find("kickme"));
        await ReadAsync(await http.DeleteAsync("/api/v1/streams/kickme"), HttpStatusCode.Accepted);
        Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("kickme") is null, TimeSpan.FromSeconds(2)));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await Assert.ThrowsAnyAsync<Exception>(() => client.ReadUntilClosedAsync(cts.Token));
        Assert.False(cts.IsCancellationRequested, "the publisher's connection was not closed");
    }

    public static TheoryData<string, string, string?, int, int, int> Endpoints => new()
    {
        // method, path, body, status without key, with read key, with admin key
        { "GET", "/api/v1/channels", null, 401, 200, 200 },
        { "POST", "/api/v1/channels", """{"name":"table"}""", 401, 403, 201 },
        { "GET", "/api/v1/channels/{id}", null, 401, 200, 200 },
        { "PATCH", "/api/v1/channels/{id}", """{"name":"tabled"}""", 401, 403, 200 },
        { "POST", "/api/v1/channels/{id}/rotate-key", null, 401, 403, 200 },
        { "GET", "/api/v1/channels/{id}/destinations", null, 401, 200, 200 },
        { "POST", "/api/v1/channels/{id}/destinations", """{"platform":"twitch","key":"live_123_abcdefgh"}""", 401, 403, 201 },
        { "GET", "/api/v1/channels/{id}/destinations/{dest}", null, 401, 200, 200 },
        { "PATCH", "/api/v1/channels/{id}/destinations/{dest}", """{"enabled":false}""", 401, 403, 200 },
        { "DELETE", "/api/v1/channels/{id}/destinations/{dest}", null, 401, 403, 204 },
        { "GET", "/api/v1/streams", null, 401, 200, 200 },
        { "DELETE", "/api/v1/streams/nobody", null, 401, 403, 404 },
        { "GET", "/api/v1/sessions", null, 401, 200, 200 },
        { "POST", "/api/v1/streams/nobody/recording", null, 401, 403, 404 },
        { "DELETE", "/api/v1/streams/nobody/recording", null, 401, 403, 404 },
        { "GET", "/api/v1/recordings", null, 401, 200, 200 },
        { "GET", "/api/v1/platforms", null, 401, 200, 200 },
        { "GET", "/api/v1/encoders", null, 401, 200, 200 },
        { "GET", "/api/v1/api-keys", null, 401, 403, 200 },
        { "POST", "/api/v1/api-keys", """{"name":"ci","scope":"read"}""", 401, 403, 201 },
        { "GET", "/api/v1/webhooks", null, 401, 403, 200 },
        { "POST", "/api/v1/webhooks", """{"url":"http://127.0.0.1:9/hook","events":["on_unpublish"]}""", 401, 403, 201 },
        { "GET", "/api/v1/webhooks/{hook}/deliveries", null, 401, 403, 200 },
        { "DELETE", "/api/v1/webhooks/{hook}", null, 401, 403, 204 },
        { "DELETE", "/api/v1/api-keys/{apikey}", null, 401, 403, 204 },
        { "DELETE", "/api/v1/channels/{id}", null, 401, 403, 204 },
    };

    [Fact]
    public async Task Every_endpoint_answers_401_403_or_success_by_key_scope()
    {
        // Sixty requests without a key from one address: raise the throttle so the table sees 401s.
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>(
            [new("Restream:Api:MaxAuthFailuresPerMinute", "1000"), .. Database("auth") is { } db ? [new KeyValuePair<string, string?>("Restream:Database", db)] : Array.Empty<KeyValuePair<string, string?>>()]));
        using var admin = server.Http();
        var readKey = (await ReadAsync(await admin.PostAsJsonAsync("/api/v1/api-keys", new { name = "viewer", scope = "read" }), HttpStatusCode.Created))
            .GetProperty("key").GetString()!;
        var failures = new List<string>();
        foreach (var row in Endpoints)
        {
            var (method, path, body) = ((string)row[0], (string)row[1], (string?)row[2]);
            // Fresh objects for each row so that deletes and renames do not collide.
            var channel = await ReadAsync(await admin.PostAsJsonAsync("/api/v1/channels", new { name = $"c{Guid.NewGuid():N}"[..12] }), HttpStatusCode.Created);
            var id = channel.GetProperty("id").GetString();
            var destination = await ReadAsync(await admin.PostAsJsonAsync($"/api/v1/channels/{id}/destinations",
                new { platform = "youtube", key = "yt-key-abcdefgh" }), HttpStatusCode.Created);
            var hook = await ReadAsync(await admin.PostAsJsonAsync("/api/v1/webhooks", new { url = "http://127.0.0.1:9/hook", events = new[] { "on_unpublish" } }), HttpStatusCode.Created);
            var spareKey = await ReadAsync(await admin.PostAsJsonAsync("/api/v1/api-keys", new { name = "spare", scope = "read" }), HttpStatusCode.Created);
            var url = path.Replace("{id}", id).Replace("{dest}", destination.GetProperty("id").GetString())
                .Replace("{hook}", hook.GetProperty("id").GetString()).Replace("{apikey}", spareKey.GetProperty("id").GetString());
            foreach (var (key, expected) in new[] { ((string?)null, (int)row[3]), (readKey, (int)row[4]), (RestreamServer.AdminKey, (int)row[5]) })
            {
                using var client = server.Http(key);
                using var request = new HttpRequestMessage(new HttpMethod(method), url);
                if (body is not null)
                {
                    request.Content = new StringContent(body.Replace("table", $"t{Guid.NewGuid():N}"[..10]), System.Text.Encoding.UTF8, "application/json");
                }

                using var response = await client.SendAsync(request);
                if ((int)response.StatusCode != expected)
                {
                    failures.Add($"{method} {path} with {(key is null ? "no key" : key == readKey ? "read key" : "admin key")}: {(int)response.StatusCode}, expected {expected}");
                }
            }
        }

        Assert.Empty(failures);
    }

    [Fact]
    public async Task Bad_input_gets_problem_details_and_changes_nothing()
    {
        await using var server = await StartAsync("bad");
        using var http = server.Http();
        var badJson = await http.PostAsync("/api/v1/channels", new StringContent("{\"name\": ", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, badJson.StatusCode);
        var badName = await http.PostAsJsonAsync("/api/v1/channels", new { name = "Not A Name!" });
        Assert.Equal(HttpStatusCode.BadRequest, badName.StatusCode);
        Assert.Equal("application/problem+json", badName.Content.Headers.ContentType?.MediaType);
        Assert.Contains("name", (await ReadAsync(badName, HttpStatusCode.BadRequest)).GetProperty("errors").EnumerateObject().Select(p => p.Name));

        var channel = await ReadAsync(await http.PostAsJsonAsync("/api/v1/channels", new { name = "good" }), HttpStatusCode.Created);
        var id = channel.GetProperty("id").GetString();
        var noRtmps = await ReadAsync(await http.PostAsJsonAsync($"/api/v1/channels/{id}/destinations",
            new { platform = "facebook", url = "rtmp://live-api-s.facebook.com/rtmp/", key = "fb-key-abcdefgh" }), HttpStatusCode.BadRequest);
        Assert.Contains("RTMPS", noRtmps.GetProperty("errors").GetProperty("url")[0].GetString());
        var perStream = await ReadAsync(await http.PostAsJsonAsync($"/api/v1/channels/{id}/destinations",
            new { platform = "telegram", key = "tg-key" }), HttpStatusCode.BadRequest);
        Assert.Contains("Telegram", perStream.GetProperty("errors").GetProperty("url")[0].GetString());
        var http1 = await ReadAsync(await http.PostAsJsonAsync($"/api/v1/channels/{id}/destinations",
            new { url = "http://example.com/app", key = "k" }), HttpStatusCode.BadRequest);
        Assert.True(http1.GetProperty("errors").TryGetProperty("url", out _));
        var duplicate = await http.PostAsJsonAsync("/api/v1/channels", new { name = "good" });
        Assert.Equal(HttpStatusCode.Conflict, duplicate.StatusCode);

        var destinations = await ReadAsync(await http.GetAsync($"/api/v1/channels/{id}/destinations"), HttpStatusCode.OK);
        Assert.Equal(0, destinations.GetArrayLength());
    }

    [Fact]
    public async Task Many_bad_keys_from_one_address_are_slowed_down()
    {
        await using var server = await StartAsync("throttle");
        using var bad = server.Http("rsk_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 25; i++)
        {
            statuses.Add((await bad.GetAsync("/api/v1/channels")).StatusCode);
        }

        Assert.Equal(HttpStatusCode.Unauthorized, statuses[0]);
        Assert.Equal(HttpStatusCode.TooManyRequests, statuses[^1]);
        // Even the right key waits out the minute from that address: a guesser gains nothing by finding it.
        using var good = server.Http();
        Assert.Equal(HttpStatusCode.TooManyRequests, (await good.GetAsync("/api/v1/channels")).StatusCode);
    }
}

public sealed class SqliteApiTests(ApiNginxFixture nginx) : ApiTestsBase(nginx), IClassFixture<ApiNginxFixture>
{
    protected override string? Database(string name) => null;
}

public sealed class PostgresApiTests(ApiNginxFixture nginx, PostgresFixture postgres) : ApiTestsBase(nginx), IClassFixture<ApiNginxFixture>, IClassFixture<PostgresFixture>
{
    protected override string? Database(string name) => postgres.Server.ConnectionString($"restream_{name}");
}
