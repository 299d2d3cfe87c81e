using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Restream.IntegrationTests.Infrastructure;

namespace Restream.IntegrationTests;

/// <summary>The owner's API, as a real HTTP server: denies one channel, fails the first unpublish call.</summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _unpublishCalls;

    public sealed record Received(string Event, string Signature, string Body);

    public ConcurrentQueue<Received> Requests { get; } = new();

    private WebhookReceiver(WebApplication app) => _app = app;

    public string Url => _app.Urls.First() + "/hook";

    public static async Task<WebhookReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var receiver = new WebhookReceiver(app);
        app.MapPost("/hook", async (HttpContext http) =>
        {
            using var reader = new StreamReader(http.Request.Body);
            var body = await reader.ReadToEndAsync();
            var eventName = http.Request.Headers["X-Restream-Event"].ToString();
            receiver.Requests.Enqueue(new Received(eventName, http.Request.Headers["X-Restream-Signature"].ToString(), body));
            return eventName switch
            {
                "on_publish" when body.Contains("\"channel\":\"denied\"") => Results.Json(new { allow = false }, statusCode: 403),
                "on_publish" => Results.Json(new { allow = true }),
                "on_unpublish" when Interlocked.Increment(ref receiver._unpublishCalls) == 1 => Results.StatusCode(500),
                _ => Results.Ok(),
            };
        });
        await app.StartAsync();
        return receiver;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

public sealed class WebhookTests
{
    [Fact]
    public async Task Owner_api_allows_and_denies_publishes_gets_signed_events_and_failures_are_retried()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "allowed",
            ["Restream:Channels:0:StreamKey"] = "allowed_key_123456",
            ["Restream:Channels:1:Name"] = "denied",
            ["Restream:Channels:1:StreamKey"] = "denied_key_1234567",
            ["Restream:Webhooks:RetryDelay"] = "00:00:00.2",
        });
        using var http = server.Http();
        var created = await http.PostAsJsonAsync("/api/v1/webhooks", new { url = receiver.Url });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var hook = JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement;
        var secret = hook.GetProperty("secret").GetString()!;
        var hookId = hook.GetProperty("id").GetString();

        var denied = await Assert.ThrowsAsync<Relay.DestinationRejectedException>(() => Relay.RtmpPublishClient.ConnectAsync(
            new Relay.PublishTarget(new Uri($"rtmp://127.0.0.1:{server.RtmpPort}/live"), "denied_key_1234567"), null, TimeProvider.System, CancellationToken.None));
        Assert.Contains("denied", denied.Message);
        Assert.Null(server.Streams.Find("denied"));

        await using (var publisher = Ffmpeg.Publish(server.PublishUrl("allowed_key_123456"), 3, size: "320x240", bitrateKbps: 300))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("allowed") is not null, TimeSpan.FromSeconds(10)), server.Log.Text);
            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(30)));
        }

        // on_unpublish failed once (500) and was delivered on the retry.
        Assert.True(await TestPorts.EventuallyAsync(() => receiver.Requests.Count(r => r.Event == "on_unpublish") == 2, TimeSpan.FromSeconds(10)),
            string.Join('\n', receiver.Requests.Select(r => r.Event)));
        JsonElement deliveries = default;
        Assert.True(await TestPorts.EventuallyAsync(() =>
        {
            deliveries = JsonDocument.Parse(http.GetStringAsync($"/api/v1/webhooks/{hookId}/deliveries").Result).RootElement;
            return deliveries.EnumerateArray().Any(d => d.GetProperty("event").GetString() == "on_unpublish");
        }, TimeSpan.FromSeconds(5)));
        var unpublish = deliveries.EnumerateArray().Single(d => d.GetProperty("event").GetString() == "on_unpublish");
        Assert.Equal(("delivered", 2), (unpublish.GetProperty("status").GetString(), unpublish.GetProperty("attempts").GetInt32()));
        Assert.Equal(2, deliveries.EnumerateArray().Count(d => d.GetProperty("event").GetString() == "on_publish"));

        // Every request is signed with the secret; a tampered body would not verify.
        Assert.NotEmpty(receiver.Requests);
        foreach (var request in receiver.Requests)
        {
            Assert.True(Verify(secret, request.Signature, request.Body), $"bad signature on {request.Event}");
            Assert.False(Verify(secret, request.Signature, request.Body + " "));
        }

        Assert.DoesNotContain(secret, server.Log.Text);
    }

    private static bool Verify(string secret, string header, string body)
    {
        var parts = header.Split(',').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
        var expected = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"{parts["t"]}.{body}"));
        return CryptographicOperations.FixedTimeEquals(expected, Convert.FromHexString(parts["v1"]));
    }
}
