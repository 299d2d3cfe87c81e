using System.Text.RegularExpressions;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Restream.Data;
using Restream.Ingest.Hub;
using Restream.Ingest.Rtmp;
using Restream.Relay;
using Restream.Server.Storage;

namespace Restream.Server.Api;

public sealed record CreateChannelRequest(string? Name);
public sealed record UpdateChannelRequest(string? Name);
public sealed record ChannelView(Guid Id, string Name, bool Live, int Destinations, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);
public sealed record ChannelCreated(Guid Id, string Name, string StreamKey, string IngestUrl, string Note);
public sealed record StreamKeyRotated(string StreamKey, string Note);

public sealed record DestinationRequest(string? Name, string? Platform, string? Url, string? Key, bool? Enabled);
public sealed record DestinationView(
    Guid Id, string Name, string Platform, string Url, bool Enabled, bool KeySet, string? KeyHint,
    string State, long BytesSent, long FramesSent, long FramesDropped, long Reconnects, double UptimeSeconds, string? LastError);

public sealed record LiveDestinationView(string Id, string Name, string Url, string State, long BytesSent, double BitrateKbps, long FramesSent,
    long FramesDropped, long Reconnects, double UptimeSeconds, string? LastError, Restream.Relay.DestinationLinkStats? Link);
public sealed record StreamView(string Channel, string Publisher, DateTimeOffset StartedAt, double UptimeSeconds, string? VideoCodec,
    int Width, int Height, double? FrameRate, string? AudioCodec, int SampleRate, long Frames, long Bytes, double BitrateKbps,
    IReadOnlyList<LiveDestinationView> Destinations, Restream.Ingest.Hub.IngestLinkStats? Link);
public sealed record SessionView(Guid Id, string Channel, string Publisher, DateTimeOffset StartedAt, DateTimeOffset EndedAt, long Frames, long Bytes, string? VideoCodec, int Width, int Height);
public sealed record ApiKeyRequest(string? Name, string? Scope);
public sealed record ApiKeyView(Guid Id, string Name, string Scope, DateTimeOffset CreatedAt, bool Revoked);
public sealed record ApiKeyCreated(Guid Id, string Name, string Scope, string Key, string Note);

/// <summary>The admin REST API: channels, destinations, live streams, sessions, API keys, platforms.</summary>
public static partial class ChannelApi
{
    private const string ShownOnce = "This key is shown once. Store it now; only its hash is kept.";

    [GeneratedRegex("^[a-z0-9][a-z0-9_-]{0,63}$")]
    private static partial Regex ChannelName();

    public static void MapRestreamApi(this WebApplication app)
    {
        var read = app.MapGroup("/api/v1").AddEndpointFilter(new RequireScope(Scopes.Read)).WithTags("read");
        var admin = app.MapGroup("/api/v1").AddEndpointFilter(new RequireScope(Scopes.Admin)).WithTags("admin");

        read.MapGet("/channels", ListChannels);
        read.MapGet("/channels/{id:guid}", GetChannel);
        admin.MapPost("/channels", CreateChannel);
        admin.MapPatch("/channels/{id:guid}", UpdateChannel);
        admin.MapDelete("/channels/{id:guid}", DeleteChannel);
        admin.MapPost("/channels/{id:guid}/rotate-key", RotateKey);

        read.MapGet("/channels/{id:guid}/destinations", ListDestinations);
        read.MapGet("/channels/{id:guid}/destinations/{destinationId:guid}", GetDestination);
        admin.MapPost("/channels/{id:guid}/destinations", CreateDestination);
        admin.MapPatch("/channels/{id:guid}/destinations/{destinationId:guid}", UpdateDestination);
        admin.MapDelete("/channels/{id:guid}/destinations/{destinationId:guid}", DeleteDestination);

        read.MapGet("/streams", ListStreams);
        admin.MapDelete("/streams/{channel}", KickStream);
        admin.MapPost("/streams/{channel}/recording", async (string channel, Restream.Transcode.RecordingService recordings) =>
            await recordings.StartAsync(channel) is { } r
                ? Results.Created($"/api/v1/recordings/{Path.GetFileName(r.File)}", new { channel = r.Channel, file = Path.GetFileName(r.File), startedAt = r.StartedAt })
                : Results.Problem(statusCode: 404, title: "Not live", detail: $"Channel '{channel}' is not live."));
        admin.MapDelete("/streams/{channel}/recording", async (string channel, Restream.Transcode.RecordingService recordings) =>
            await recordings.StopAsync(channel) ? Results.NoContent()
                : Results.Problem(statusCode: 404, title: "Not recording", detail: $"Channel '{channel}' is not being recorded."));
        read.MapGet("/recordings", (Restream.Transcode.RecordingService recordings) =>
            Results.Ok(recordings.Files().Select(f => new { file = f.Name, bytes = f.Length, createdAt = f.CreationTimeUtc })));
        read.MapGet("/sessions", ListSessions);
        read.MapGet("/platforms", () => Results.Ok(Platforms.All));
        read.MapGet("/encoders", async (CancellationToken ct) => Results.Ok(await Restream.Transcode.EncoderProbe.ProbeAsync(ct)));

        admin.MapGet("/api-keys", ListApiKeys);
        admin.MapPost("/api-keys", CreateApiKey);
        admin.MapDelete("/api-keys/{id:guid}", RevokeApiKey);
    }

    private static ChannelView View(ChannelEntity c, StreamRegistry registry) =>
        new(c.Id, c.Name, registry.Find(c.Name) is not null, c.Destinations.Count, c.CreatedAt, c.UpdatedAt);

    private static async Task<IResult> ListChannels(RestreamDbFactory factory, StreamRegistry registry, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channels = await db.Channels.AsNoTracking().Include(c => c.Destinations).OrderBy(c => c.Name).ToListAsync(ct);
        return Results.Ok(channels.Select(c => View(c, registry)));
    }

    private static async Task<IResult> GetChannel(Guid id, RestreamDbFactory factory, StreamRegistry registry, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channel = await db.Channels.AsNoTracking().Include(c => c.Destinations).FirstOrDefaultAsync(c => c.Id == id, ct);
        return channel is null ? NotFound("channel", id) : Results.Ok(View(channel, registry));
    }

    private static async Task<IResult> CreateChannel(CreateChannelRequest? request, HttpContext http, RestreamDbFactory factory,
        TimeProvider time, CancellationToken ct)
    {
        var name = request?.Name?.Trim() ?? "";
        if (!ChannelName().IsMatch(name))
        {
            return Invalid("name", "Use 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit.");
        }

        await using var db = factory.Create();
        if (await db.Channels.AnyAsync(c => c.Name == name, ct))
        {
            return Results.Problem(statusCode: 409, title: "Channel exists", detail: $"A channel named '{name}' already exists.");
        }

        var key = SecretKeys.Issue(DatabaseChannelCatalog.StreamKeyPrefix);
        var now = time.GetUtcNow();
        var channel = new ChannelEntity
        {
            Id = Guid.NewGuid(), Name = name, StreamKeyId = key.Id, StreamKeySalt = key.Salt, StreamKeyHash = key.Hash,
            CreatedAt = now, UpdatedAt = now,
        };
        db.Channels.Add(channel);
        await db.SaveChangesAsync(ct);
        var ingest = $"rtmp://{http.Request.Host.Host}:{(http.RequestServices.GetRequiredService<RtmpServer>().BoundEndpoint.IsCompletedSuccessfully ? http.RequestServices.GetRequiredService<RtmpServer>().BoundEndpoint.Result.Port : 1935)}/live";
        return Results.Created($"/api/v1/channels/{channel.Id}", new ChannelCreated(channel.Id, name, key.Key, ingest, ShownOnce));
    }

    private static async Task<IResult> UpdateChannel(Guid id, UpdateChannelRequest? request, RestreamDbFactory factory,
        StreamRegistry registry, ChannelEvents events, TimeProvider time, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channel = await db.Channels.Include(c => c.Destinations).FirstOrDefaultAsync(c => c.Id == id, ct);
        if (channel is null)
        {
            return NotFound("channel", id);
        }

        if (request?.Name is { } newName && newName != channel.Name)
        {
            if (!ChannelName().IsMatch(newName))
            {
                return Invalid("name", "Use 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit.");
            }

            if (registry.Find(channel.Name) is not null)
            {
                return Results.Problem(statusCode: 409, title: "Channel is live", detail: "Rename the channel when it is not live.");
            }

            if (await db.Channels.AnyAsync(c => c.Name == newName, ct))
            {
                return Results.Problem(statusCode: 409, title: "Channel exists", detail: $"A channel named '{newName}' already exists.");
            }

            channel.Name = newName;
        }

        channel.UpdatedAt = time.GetUtcNow();
        await db.SaveChangesAsync(ct);
        events.OnChannelChanged(channel.Name);
        return Results.Ok(View(channel, registry));
    }

    private static async Task<IResult> DeleteChannel(Guid id, RestreamDbFactory factory, StreamRegistry registry, ChannelEvents events, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channel = await db.Channels.FirstOrDefaultAsync(c => c.Id == id, ct);
        if (channel is null)
        {
            return NotFound("channel", id);
        }

        db.Channels.Remove(channel);
        await db.SaveChangesAsync(ct);
        events.OnChannelChanged(channel.Name);
        registry.Find(channel.Name)?.RequestStop();
        return Results.NoContent();
    }

    private static async Task<IResult> RotateKey(Guid id, RestreamDbFactory factory, ChannelEvents events, TimeProvider time, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channel = await db.Channels.FirstOrDefaultAsync(c => c.Id == id, ct);
        if (channel is null)
        {
            return NotFound("channel", id);
        }

        var key = SecretKeys.Issue(DatabaseChannelCatalog.StreamKeyPrefix);
        channel.StreamKeyId = key.Id;
        channel.StreamKeySalt = key.Salt;
        channel.StreamKeyHash = key.Hash;
        channel.UpdatedAt = time.GetUtcNow();
        await db.SaveChangesAsync(ct);
        events.OnChannelChanged(channel.Name);
        return Results.Ok(new StreamKeyRotated(key.Key, ShownOnce + " A stream that is live now keeps going; the old key no longer starts one."));
    }

    private static DestinationView View(DestinationEntity d, IDataProtector protector, RelayService relay, string channelName)
    {
        var status = relay.GetDestinations(channelName).FirstOrDefault(s => s.Id == d.Id.ToString());
        string? hint = null;
        if (d.ProtectedKey is not null)
        {
            var key = protector.Unprotect(d.ProtectedKey);
            hint = key.Length >= 12 ? "…" + key[^4..] : null;
        }

        return new DestinationView(d.Id, d.Name, d.Platform, SafeUrl(d.Url), d.Enabled, d.ProtectedKey is not null, hint,
            (status?.State ?? DestinationState.Idle).ToString().ToLowerInvariant(), status?.BytesSent ?? 0, status?.FramesSent ?? 0,
            status?.FramesDropped ?? 0, status?.Reconnects ?? 0, status?.Uptime.TotalSeconds ?? 0, status?.LastError);
    }

    /// <summary>Destination URLs may carry a key in their query; listings never show it.</summary>
    private static string SafeUrl(string url) => url.Split('?', 2)[0];

    private static async Task<IResult> ListDestinations(Guid id, RestreamDbFactory factory, IDataProtectionProvider protection, RelayService relay, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channel = await db.Channels.AsNoTracking().Include(c => c.Destinations).FirstOrDefaultAsync(c => c.Id == id, ct);
        if (channel is null)
        {
            return NotFound("channel", id);
        }

        var protector = protection.CreateProtector(DatabaseChannelCatalog.DestinationKeyPurpose);
        return Results.Ok(channel.Destinations.OrderBy(d => d.CreatedAt).Select(d => View(d, protector, relay, channel.Name)));
    }

    private static async Task<IResult> GetDestination(Guid id, Guid destinationId, RestreamDbFactory factory, IDataProtectionProvider protection, RelayService relay, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channel = await db.Channels.AsNoTracking().Include(c => c.Destinations).FirstOrDefaultAsync(c => c.Id == id, ct);
        var destination = channel?.Destinations.FirstOrDefault(d => d.Id == destinationId);
        return destination is null ? NotFound("destination", destinationId)
            : Results.Ok(View(destination, protection.CreateProtector(DatabaseChannelCatalog.DestinationKeyPurpose), relay, channel!.Name));
    }

    private static async Task<IResult> CreateDestination(Guid id, DestinationRequest? request, RestreamDbFactory factory,
        IDataProtectionProvider protection, RelayService relay, LiveChannels live, TimeProvider time, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channel = await db.Channels.Include(c => c.Destinations).FirstOrDefaultAsync(c => c.Id == id, ct);
        if (channel is null)
        {
            return NotFound("channel", id);
        }

        var entity = new DestinationEntity { Id = Guid.NewGuid(), ChannelId = id, Name = "", Platform = "", Url = "", CreatedAt = time.GetUtcNow() };
        var protector = protection.CreateProtector(DatabaseChannelCatalog.DestinationKeyPurpose);
        if (Apply(entity, request ?? new DestinationRequest(null, null, null, null, null), protector, creating: true) is { } problem)
        {
            return problem;
        }

        db.Destinations.Add(entity);
        await db.SaveChangesAsync(ct);
        await live.RefreshAsync(channel.Name, ct);
        return Results.Created($"/api/v1/channels/{id}/destinations/{entity.Id}", View(entity, protector, relay, channel.Name));
    }

    private static async Task<IResult> UpdateDestination(Guid id, Guid destinationId, DestinationRequest? request, RestreamDbFactory factory,
        IDataProtectionProvider protection, RelayService relay, LiveChannels live, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channel = await db.Channels.Include(c => c.Destinations).FirstOrDefaultAsync(c => c.Id == id, ct);
        var entity = channel?.Destinations.FirstOrDefault(d => d.Id == destinationId);
        if (entity is null)
        {
            return NotFound("destination", destinationId);
        }

        var protector = protection.CreateProtector(DatabaseChannelCatalog.DestinationKeyPurpose);
        if (Apply(entity, request ?? new DestinationRequest(null, null, null, null, null), protector, creating: false) is { } problem)
        {
            return problem;
        }

        await db.SaveChangesAsync(ct);
        await live.RefreshAsync(channel!.Name, ct);
        return Results.Ok(View(entity, protector, relay, channel.Name));
    }

    private static async Task<IResult> DeleteDestination(Guid id, Guid destinationId, RestreamDbFactory factory, LiveChannels live, CancellationToken ct)
    {
        await using var db = factory.Create();
        var channel = await db.Channels.Include(c => c.Destinations).FirstOrDefaultAsync(c => c.Id == id, ct);
        var entity = channel?.Destinations.FirstOrDefault(d => d.Id == destinationId);
        if (entity is null)
        {
            return NotFound("destination", destinationId);
        }

        db.Destinations.Remove(entity);
        await db.SaveChangesAsync(ct);
        await live.RefreshAsync(channel!.Name, ct);
        return Results.NoContent();
    }

    /// <summary>Validates a destination request and applies it; returns a problem to send back, or null.</summary>
    private static IResult? Apply(DestinationEntity entity, DestinationRequest request, IDataProtector protector, bool creating)
    {
        var errors = new Dictionary<string, string[]>();
        var platformId = request.Platform ?? (creating ? "custom" : entity.Platform);
        var platform = Platforms.Find(platformId);
        if (platform is null)
        {
            errors["platform"] = [$"Unknown platform '{platformId}'. Known: {string.Join(", ", Platforms.All.Select(p => p.Id))}."];
        }

        var url = request.Url ?? (creating || request.Platform is not null ? platform?.Url : entity.Url);
        if (string.IsNullOrWhiteSpace(url))
        {
            errors["url"] = [platform is null ? "A server URL is required." : $"{platform.DisplayName} needs the server URL it shows you ({platform.Notes})."];
        }
        else if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("rtmp" or "rtmps" or "srt") || string.IsNullOrEmpty(uri.Host))
        {
            errors["url"] = ["Use an rtmp://, rtmps:// or srt:// URL with a host."];
        }
        else if (platform is { RequiresRtmps: true } && uri.Scheme != "rtmps")
        {
            errors["url"] = [$"{platform.DisplayName} only accepts RTMPS: use an rtmps:// URL."];
        }

        var key = request.Key;
        if (creating && string.IsNullOrEmpty(key) && url is not null && Uri.TryCreate(url, UriKind.Absolute, out var u2) && u2.Scheme != "srt" && u2.AbsolutePath.Trim('/').Split('/').Length < 2)
        {
            errors["key"] = ["The platform's stream key is required (or put it last in the URL path)."];
        }

        var name = request.Name?.Trim() ?? (creating ? platform?.DisplayName ?? "destination" : entity.Name);
        if (name.Length is 0 or > 100)
        {
            errors["name"] = ["Use 1-100 characters."];
        }

        if (errors.Count > 0)
        {
            return Results.ValidationProblem(errors, title: "The destination is not valid");
        }

        if (string.IsNullOrEmpty(key) && request.Url is not null && (creating || entity.ProtectedKey is null) && !request.Url.StartsWith("srt:", StringComparison.OrdinalIgnoreCase))
        {
            // A key pasted as the URL's last segment is split off and stored encrypted like any key.
            var uri = new Uri(url!);
            if (uri.AbsolutePath.Trim('/').Contains('/'))
            {
                var target = Relay.PublishTarget.From(uri, null);
                url = target.ServerUrl.ToString();
                key = target.StreamName;
            }
        }

        entity.Name = name;
        entity.Platform = platform!.Id;
        entity.Url = url!;
        entity.Enabled = request.Enabled ?? (creating || entity.Enabled);
        if (key is not null)
        {
            entity.ProtectedKey = key.Length == 0 ? null : protector.Protect(key);
        }

        return null;
    }

    private static async Task<IResult> ListStreams(StreamRegistry registry, RelayService relay, TimeProvider time)
    {
        await Task.CompletedTask;
        var now = time.GetUtcNow();
        return Results.Ok(registry.LiveStreams.Select(h =>
        {
            var uptime = (now - h.StartedAt).TotalSeconds;
            return new StreamView(h.Name, h.PublisherRemote, h.StartedAt, uptime, h.Media?.VideoCodec, h.Media?.Width ?? 0, h.Media?.Height ?? 0,
                h.Media?.FrameRate, h.Media?.AudioCodec, h.Media?.SampleRate ?? 0, h.FramesIn, h.BytesIn,
                uptime > 0 ? h.BytesIn * 8 / 1000.0 / uptime : 0,
                [.. relay.GetDestinations(h.Name).Select(d => new LiveDestinationView(d.Id, d.Name, d.Url, d.State.ToString().ToLowerInvariant(),
                    d.BytesSent, d.Uptime.TotalSeconds > 1 ? d.BytesSent * 8 / 1000.0 / uptime : 0, d.FramesSent, d.FramesDropped, d.Reconnects, d.Uptime.TotalSeconds, d.LastError, d.Link))],
                h.LinkStats?.Invoke());
        }));
    }

    private static IResult KickStream(string channel, StreamRegistry registry)
    {
        var hub = registry.Find(channel);
        if (hub is null)
        {
            return Results.Problem(statusCode: 404, title: "Not live", detail: $"Channel '{channel}' is not live.");
        }

        hub.RequestStop();
        return Results.Accepted();
    }

    private static async Task<IResult> ListSessions(RestreamDbFactory factory, int? limit, CancellationToken ct)
    {
        await using var db = factory.Create();
        var sessions = await db.Sessions.AsNoTracking().OrderByDescending(s => s.StartedAt).Take(Math.Clamp(limit ?? 100, 1, 1000)).ToListAsync(ct);
        return Results.Ok(sessions.Select(s => new SessionView(s.Id, s.ChannelName, s.Publisher, s.StartedAt, s.EndedAt, s.Frames, s.Bytes, s.VideoCodec, s.Width, s.Height)));
    }

    private static async Task<IResult> ListApiKeys(RestreamDbFactory factory, CancellationToken ct)
    {
        await using var db = factory.Create();
        var keys = await db.ApiKeys.AsNoTracking().ToListAsync(ct);
        return Results.Ok(keys.OrderBy(k => k.CreatedAt).Select(k => new ApiKeyView(k.Id, k.Name, k.Scope, k.CreatedAt, k.RevokedAt is not null)));
    }

    private static async Task<IResult> CreateApiKey(ApiKeyRequest? request, RestreamDbFactory factory, TimeProvider time, CancellationToken ct)
    {
        var scope = request?.Scope ?? Scopes.Read;
        if (!Scopes.IsValid(scope))
        {
            return Invalid("scope", "Use 'read' or 'admin'.");
        }

        var issued = SecretKeys.Issue(ApiKeyAuthenticator.Prefix);
        await using var db = factory.Create();
        var entity = new ApiKeyEntity
        {
            Id = Guid.NewGuid(), Name = request?.Name ?? scope, KeyId = issued.Id, Salt = issued.Salt, Hash = issued.Hash, Scope = scope,
            CreatedAt = time.GetUtcNow(),
        };
        db.ApiKeys.Add(entity);
        await db.SaveChangesAsync(ct);
        return Results.Created($"/api/v1/api-keys/{entity.Id}", new ApiKeyCreated(entity.Id, entity.Name, scope, issued.Key, ShownOnce));
    }

    private static async Task<IResult> RevokeApiKey(Guid id, RestreamDbFactory factory, ApiKeyAuthenticator auth, TimeProvider time, CancellationToken ct)
    {
        await using var db = factory.Create();
        var entity = await db.ApiKeys.FirstOrDefaultAsync(k => k.Id == id, ct);
        if (entity is null)
        {
            return NotFound("API key", id);
        }

        entity.RevokedAt ??= time.GetUtcNow();
        await db.SaveChangesAsync(ct);
        auth.Forget();
        return Results.NoContent();
    }

    private static IResult NotFound(string what, Guid id) => Results.Problem(statusCode: 404, title: $"No such {what}", detail: $"There is no {what} {id}.");

    private static IResult Invalid(string field, string message) =>
        Results.ValidationProblem(new Dictionary<string, string[]> { [field] = [message] });
}

/// <summary>Applies stored destination changes to a channel that is live, within the request.</summary>
public sealed class LiveChannels(DatabaseChannelCatalog catalog, RelayService relay, StreamRegistry registry, ChannelEvents events)
{
    public async Task RefreshAsync(string channelName, CancellationToken cancellationToken)
    {
        events.OnChannelChanged(channelName);
        if (registry.Find(channelName) is null)
        {
            return;
        }

        if (await catalog.FindByNameAsync(channelName, cancellationToken) is { } channel)
        {
            relay.Apply(channel);
        }
    }
}

public sealed record WebhookRequest(string? Url, string[]? Events, bool? Enabled);
public sealed record WebhookView(Guid Id, string Url, string[] Events, bool Enabled, DateTimeOffset CreatedAt);
public sealed record WebhookCreated(Guid Id, string Url, string[] Events, string Secret, string Note);
public sealed record DeliveryView(Guid Id, string Event, string Status, int Attempts, int? StatusCode, string? Error, double DurationMs, DateTimeOffset CreatedAt);

/// <summary>/api/v1/webhooks: the owner's endpoints and their delivery log.</summary>
public static class WebhookApi
{
    public static void MapWebhookApi(this WebApplication app)
    {
        var admin = app.MapGroup("/api/v1/webhooks").AddEndpointFilter(new RequireScope(Scopes.Admin)).WithTags("admin");
        admin.MapGet("/", async (RestreamDbFactory factory, CancellationToken ct) =>
        {
            await using var db = factory.Create();
            var hooks = await db.Webhooks.AsNoTracking().ToListAsync(ct);
            return Results.Ok(hooks.OrderBy(h => h.CreatedAt).Select(h => new WebhookView(h.Id, h.Url, h.Events.Split(','), h.Enabled, h.CreatedAt)));
        });
        admin.MapPost("/", async (WebhookRequest? request, RestreamDbFactory factory, WebhookDispatcher dispatcher, TimeProvider time, CancellationToken ct) =>
        {
            var errors = new Dictionary<string, string[]>();
            if (request?.Url is null || !Uri.TryCreate(request.Url, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
            {
                errors["url"] = ["An http:// or https:// URL is required."];
            }

            var events = request?.Events is { Length: > 0 } e ? e : WebhookEvents.All;
            if (events.Except(WebhookEvents.All).ToList() is { Count: > 0 } unknown)
            {
                errors["events"] = [$"Unknown events: {string.Join(", ", unknown)}. Known: {string.Join(", ", WebhookEvents.All)}."];
            }

            if (errors.Count > 0)
            {
                return Results.ValidationProblem(errors);
            }

            var secret = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24));
            await using var db = factory.Create();
            var hook = new WebhookEntity
            {
                Id = Guid.NewGuid(), Url = request!.Url!, ProtectedSecret = dispatcher.Protect(secret), Events = string.Join(',', events),
                Enabled = request.Enabled ?? true, CreatedAt = time.GetUtcNow(),
            };
            db.Webhooks.Add(hook);
            await db.SaveChangesAsync(ct);
            return Results.Created($"/api/v1/webhooks/{hook.Id}", new WebhookCreated(hook.Id, hook.Url, events, secret,
                "The signing secret is shown once. Verify X-Restream-Signature: t=<unix>,v1=hex(HMAC-SHA256(secret, \"<t>.<body>\"))."));
        });
        admin.MapDelete("/{id:guid}", async (Guid id, RestreamDbFactory factory, CancellationToken ct) =>
        {
            await using var db = factory.Create();
            var hook = await db.Webhooks.FirstOrDefaultAsync(h => h.Id == id, ct);
            if (hook is null)
            {
                return Results.Problem(statusCode: 404, title: "No such webhook");
            }

            db.Webhooks.Remove(hook);
            await db.SaveChangesAsync(ct);
            return Results.NoContent();
        });
        admin.MapGet("/{id:guid}/deliveries", async (Guid id, RestreamDbFactory factory, CancellationToken ct) =>
        {
            await using var db = factory.Create();
            var deliveries = await db.WebhookDeliveries.AsNoTracking().Where(d => d.WebhookId == id).OrderByDescending(d => d.CreatedAt).Take(200).ToListAsync(ct);
            return Results.Ok(deliveries.Select(d => new DeliveryView(d.Id, d.Event, d.Status, d.Attempts, d.StatusCode, d.Error, d.DurationMs, d.CreatedAt)));
        });
    }
}
