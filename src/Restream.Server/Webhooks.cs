using System.Diagnostics;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Prometheus;
using Restream.Data;
using Restream.Ingest;
using Restream.Ingest.Hub;
using Restream.Relay;
using Restream.Server.Storage;

namespace Restream.Server;

/// <summary>Options of the webhooks (<c>Restream:Webhooks</c>).</summary>
public sealed class WebhookOptions
{
    /// <summary>How long an on_publish endpoint may take to answer.</summary>
    public TimeSpan PublishTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>What to do when on_publish cannot be answered (timeout, error): "allow" or "deny".</summary>
    public string PublishDefault { get; set; } = "allow";

    /// <summary>Attempts per event delivery (on_unpublish, on_destination_state) before giving up.</summary>
    public int MaxAttempts { get; set; } = 5;

    /// <summary>First wait between attempts; doubles each time.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);
}

public static class WebhookEvents
{
    public const string Publish = "on_publish";
    public const string Unpublish = "on_unpublish";
    public const string DestinationState = "on_destination_state";
    public static readonly string[] All = [Publish, Unpublish, DestinationState];
}

/// <summary>
/// Calls the owner's endpoints. Bodies are JSON, signed with HMAC-SHA256 over "{timestamp}.{body}" with
/// the webhook's secret: <c>X-Restream-Signature: t={unix seconds},v1={hex}</c>. on_publish is asked
/// synchronously and may refuse the publish; other events are queued and retried with backoff.
/// Every attempt lands in the delivery log.
/// </summary>
public sealed partial class WebhookDispatcher : IPublishAuthorizer, IHostedService
{
    public const string SecretPurpose = "Restream.WebhookSecret.v1";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly RestreamDbFactory _db;
    private readonly IDataProtector _protector;
    private readonly WebhookOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly HttpClient _http = new() { Timeout = Timeout.InfiniteTimeSpan };
    private readonly Channel<(WebhookEntity Hook, string Event, byte[] Body)> _queue =
        System.Threading.Channels.Channel.CreateBounded<(WebhookEntity, string, byte[])>(new BoundedChannelOptions(10_000) { FullMode = BoundedChannelFullMode.DropOldest });
    private readonly StreamRegistry _registry;
    private readonly RelayService _relay;
    private readonly CancellationTokenSource _stop = new();
    private readonly Histogram _latency;
    private Task? _worker;

    public WebhookDispatcher(RestreamDbFactory db, IDataProtectionProvider protection, WebhookOptions options, TimeProvider time,
        StreamRegistry registry, RelayService relay, RestreamMetrics metrics, ILogger<WebhookDispatcher> log)
    {
        _db = db;
        _protector = protection.CreateProtector(SecretPurpose);
        _options = options;
        _time = time;
        _registry = registry;
        _relay = relay;
        _log = log;
        _latency = Metrics.WithCustomRegistry(metrics.Registry).CreateHistogram("restream_webhook_duration_seconds",
            "Time the owner's endpoint took to answer.", ["event"], new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.005, 2, 12) });
    }

    public string Protect(string secret) => _protector.Protect(secret);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _registry.StreamEnded += OnStreamEnded;
        _relay.DestinationStateChanged += OnDestinationState;
        _worker = Task.Run(() => DeliverQueuedAsync(_stop.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _registry.StreamEnded -= OnStreamEnded;
        _relay.DestinationStateChanged -= OnDestinationState;
        await _stop.CancelAsync();
        if (_worker is not null)
        {
            await _worker.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    private void OnStreamEnded(StreamHub hub) => _ = EnqueueAsync(WebhookEvents.Unpublish, new
    {
        @event = WebhookEvents.Unpublish, channel = hub.Name, remote = hub.PublisherRemote, startedAt = hub.StartedAt,
        endedAt = _time.GetUtcNow(), frames = hub.FramesIn, bytes = hub.BytesIn,
    });

    private void OnDestinationState(StreamHub hub, DestinationPusher pusher, DestinationState state)
    {
        var status = pusher.GetStatus();
        _ = EnqueueAsync(WebhookEvents.DestinationState, new
        {
            @event = WebhookEvents.DestinationState, channel = hub.Name, destination = status.Name, destinationId = status.Id,
            state = state.ToString().ToLowerInvariant(), error = status.LastError, reconnects = status.Reconnects, time = _time.GetUtcNow(),
        });
    }

    private async Task EnqueueAsync(string eventName, object payload)
    {
        try
        {
            var body = JsonSerializer.SerializeToUtf8Bytes(payload, Json);
            foreach (var hook in await HooksForAsync(eventName, CancellationToken.None))
            {
                _queue.Writer.TryWrite((hook, eventName, body));
            }
        }
        catch (Exception e) when (e is DbUpdateException or InvalidOperationException or System.Data.Common.DbException)
        {
            LogQueueFailed(_log, eventName, e.Message);
        }
    }

    private async Task<List<WebhookEntity>> HooksForAsync(string eventName, CancellationToken cancellationToken)
    {
        await using var db = _db.Create();
        var hooks = await db.Webhooks.AsNoTracking().Where(w => w.Enabled).ToListAsync(cancellationToken);
        return [.. hooks.Where(h => h.Events.Split(',').Contains(eventName))];
    }

    /// <summary>on_publish: every subscribed endpoint must allow; unanswered ones get the configured default.</summary>
    public async ValueTask<string?> AuthorizeAsync(ChannelConfig channel, string remote, CancellationToken cancellationToken)
    {
        var hooks = await HooksForAsync(WebhookEvents.Publish, cancellationToken);
        if (hooks.Count == 0)
        {
            return null;
        }

        var body = JsonSerializer.SerializeToUtf8Bytes(new { @event = WebhookEvents.Publish, channel = channel.Name, remote, time = _time.GetUtcNow() }, Json);
        foreach (var hook in hooks)
        {
            var (ok, status, error, answer) = await SendAsync(hook, WebhookEvents.Publish, body, _options.PublishTimeout, cancellationToken);
            await LogDeliveryAsync(hook, WebhookEvents.Publish, ok || status is 401 or 403 ? "delivered" : "failed", 1, status, error, answer.Elapsed);
            if (status is 401 or 403)
            {
                return "refused by the owner's on_publish endpoint";
            }

            if (ok && answer.Body is { } text && text.Contains("\"allow\":false", StringComparison.OrdinalIgnoreCase))
            {
                return "refused by the owner's on_publish endpoint";
            }

            if (!ok && _options.PublishDefault.Equals("deny", StringComparison.OrdinalIgnoreCase))
            {
                return $"on_publish endpoint unavailable ({error ?? status?.ToString(System.Globalization.CultureInfo.InvariantCulture)}) and Restream:Webhooks:PublishDefault is deny";
            }
        }

        return null;
    }

    private async Task DeliverQueuedAsync(CancellationToken cancellationToken)
    {
        await foreach (var (hook, eventName, body) in _queue.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            _ = DeliverWithRetriesAsync(hook, eventName, body, cancellationToken);
        }
    }

    private async Task DeliverWithRetriesAsync(WebhookEntity hook, string eventName, byte[] body, CancellationToken cancellationToken)
    {
        var delay = _options.RetryDelay;
        for (var attempt = 1; attempt <= _options.MaxAttempts; attempt++)
        {
            var (ok, status, error, answer) = await SendAsync(hook, eventName, body, TimeSpan.FromSeconds(10), cancellationToken);
            var last = ok || attempt == _options.MaxAttempts;
            if (last)
            {
                await LogDeliveryAsync(hook, eventName, ok ? "delivered" : "failed", attempt, status, error, answer.Elapsed);
                return;
            }

            try
            {
                await Task.Delay(delay, _time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            delay *= 2;
        }
    }

    private async Task<(bool Ok, int? Status, string? Error, (TimeSpan Elapsed, string? Body) Answer)> SendAsync(
        WebhookEntity hook, string eventName, byte[] body, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var timestamp = _time.GetUtcNow().ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var secret = Encoding.UTF8.GetBytes(_protector.Unprotect(hook.ProtectedSecret));
        var signed = Encoding.UTF8.GetBytes(timestamp + ".").Concat(body).ToArray();
        var signature = Convert.ToHexStringLower(HMACSHA256.HashData(secret, signed));
        using var request = new HttpRequestMessage(HttpMethod.Post, hook.Url) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.Add("X-Restream-Event", eventName);
        request.Headers.Add("X-Restream-Signature", $"t={timestamp},v1={signature}");
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        var watch = Stopwatch.StartNew();
        try
        {
            using var response = await _http.SendAsync(request, cts.Token);
            var text = await response.Content.ReadAsStringAsync(cts.Token);
            _latency.WithLabels(eventName).Observe(watch.Elapsed.TotalSeconds);
            return (response.IsSuccessStatusCode, (int)response.StatusCode, null, (watch.Elapsed, text));
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            _latency.WithLabels(eventName).Observe(watch.Elapsed.TotalSeconds);
            var error = e is OperationCanceledException ? $"no answer within {timeout.TotalSeconds:0.#} s" : e.Message;
            LogFailed(_log, eventName, new Uri(hook.Url).Host, error);
            return (false, null, error, (watch.Elapsed, null));
        }
    }

    private async Task LogDeliveryAsync(WebhookEntity hook, string eventName, string status, int attempts, int? code, string? error, TimeSpan elapsed)
    {
        try
        {
            await using var db = _db.Create();
            db.WebhookDeliveries.Add(new WebhookDeliveryEntity
            {
                Id = Guid.NewGuid(), WebhookId = hook.Id, Event = eventName, Status = status, Attempts = attempts, StatusCode = code,
                Error = error is { Length: > 500 } ? error[..500] : error, DurationMs = elapsed.TotalMilliseconds,
                CreatedAt = _time.GetUtcNow(), CompletedAt = _time.GetUtcNow(),
            });
            await db.SaveChangesAsync();
        }
        catch (Exception e) when (e is DbUpdateException or InvalidOperationException or System.Data.Common.DbException)
        {
            LogQueueFailed(_log, eventName, e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "webhook {Event} to {Host} failed: {Error}")]
    private static partial void LogFailed(ILogger logger, string @event, string host, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "webhook {Event} could not be recorded: {Error}")]
    private static partial void LogQueueFailed(ILogger logger, string @event, string error);
}
