using System.Text.Json;
using StackExchange.Redis;

namespace Restream.Coordination;

/// <summary>What a transcode worker needs to know to run one live channel's ladder.</summary>
public sealed record TranscodeJobRequest(string Channel, string InputUrl, int Width, int Height, double FrameRate, int SourceKbps);

/// <summary>A job as a worker holds it: the stream entry id and the request.</summary>
public sealed record QueuedTranscodeJob(string Id, TranscodeJobRequest Request);

/// <summary>Options of cluster coordination (<c>Restream:Coordination</c>).</summary>
public sealed class CoordinationOptions
{
    /// <summary>
    /// <c>redis://host:6379</c> (or <c>rediss://</c> for TLS, <c>redis://:password@host</c>); empty means
    /// embedded mode: one process, in-process coordination.
    /// </summary>
    public string? Redis { get; set; }

    /// <summary>This node's name in the cluster (a worker's consumer name). Defaults to host name and process id.</summary>
    public string NodeId { get; set; } = $"{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>How ingest nodes reach this node's RTMP port (workers pull live streams from it).</summary>
    public string AdvertiseHost { get; set; } = Environment.MachineName;

    /// <summary>A live stream's marker lives this long unless its ingest node refreshes it.</summary>
    public TimeSpan LiveTtl { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>A job nobody has touched for this long belongs to a dead worker and is taken over.</summary>
    public TimeSpan ClaimAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How many channels one worker transcodes at once.</summary>
    public int MaxJobsPerWorker { get; set; } = 4;

    /// <summary>Prefix of every Redis key, so clusters can share a Redis.</summary>
    public string KeyPrefix { get; set; } = "restream:";

    public bool Enabled => !string.IsNullOrWhiteSpace(Redis);

    /// <summary>StackExchange.Redis options from a <c>redis://</c> URL, or an error naming the key.</summary>
    public static ConfigurationOptions ParseRedis(string value)
    {
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("redis" or "rediss") || string.IsNullOrEmpty(uri.Host))
        {
            throw new ArgumentException($"Restream:Coordination:Redis: '{value}' is not a redis://host:port URL");
        }

        var options = new ConfigurationOptions
        {
            // Reconnects are the library's job; a Redis that is down at start-up is not fatal.
            AbortOnConnectFail = false,
            Ssl = uri.Scheme == "rediss",
            ConnectTimeout = 5000,
            ClientName = "restream",
        };
        options.EndPoints.Add(uri.Host, uri.IsDefaultPort || uri.Port <= 0 ? 6379 : uri.Port);
        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            var parts = Uri.UnescapeDataString(uri.UserInfo).Split(':', 2);
            options.User = parts.Length == 2 && parts[0].Length > 0 ? parts[0] : null;
            options.Password = parts.Length == 2 ? parts[1] : parts[0];
        }

        if (uri.AbsolutePath.Trim('/') is { Length: > 0 } db && int.TryParse(db, out var database))
        {
            options.DefaultDatabase = database;
        }

        return options;
    }
}

/// <summary>
/// The cluster's transcode job queue: a Redis Stream read by one consumer group. Ingest nodes add a
/// job when a channel with transcoding goes live and keep a short-lived "live" marker fresh while it
/// is; workers read new jobs, touch the ones they run every half second (which resets their idle
/// time), and claim any job left idle longer than <see cref="CoordinationOptions.ClaimAfter"/> —
/// the job of a worker that died. A job is acknowledged and deleted when its stream is no longer live.
/// </summary>
public sealed class RedisTranscodeQueue(IConnectionMultiplexer redis, CoordinationOptions options)
{
    public const string Group = "transcode-workers";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private IDatabase Db => redis.GetDatabase();
    private RedisKey Jobs => options.KeyPrefix + "transcode:jobs";
    private RedisKey Live(string channel) => options.KeyPrefix + "live:" + channel;

    // ---- ingest side

    /// <summary>Marks the channel live and queues its job.</summary>
    public async Task<string> EnqueueAsync(TranscodeJobRequest request)
    {
        await Db.StringSetAsync(Live(request.Channel), options.NodeId, options.LiveTtl).ConfigureAwait(false);
        var id = await Db.StreamAddAsync(Jobs, [new NameValueEntry("job", JsonSerializer.Serialize(request, Json))]).ConfigureAwait(false);
        return id.ToString();
    }

    /// <summary>Keeps the channel's live marker from expiring (the ingest node's heartbeat).</summary>
    public Task RefreshLiveAsync(string channel) => Db.StringSetAsync(Live(channel), options.NodeId, options.LiveTtl);

    /// <summary>The stream ended: its worker stops and completes the job.</summary>
    public Task EndAsync(string channel) => Db.KeyDeleteAsync(Live(channel));

    // ---- worker side

    public async Task EnsureGroupAsync()
    {
        try
        {
            // From the start of the stream: jobs queued before the first worker came up are not lost.
            await Db.StreamCreateConsumerGroupAsync(Jobs, Group, StreamPosition.Beginning, createStream: true).ConfigureAwait(false);
        }
        catch (RedisServerException e) when (e.Message.StartsWith("BUSYGROUP", StringComparison.Ordinal))
        {
            // another worker made it first
        }
    }

    /// <summary>New jobs nobody has read yet.</summary>
    public async Task<IReadOnlyList<QueuedTranscodeJob>> ReadNewAsync(string consumer, int count)
    {
        var entries = await Db.StreamReadGroupAsync(Jobs, Group, consumer, StreamPosition.NewMessages, count).ConfigureAwait(false);
        return Parse(entries);
    }

    /// <summary>Jobs whose worker has not touched them for <see cref="CoordinationOptions.ClaimAfter"/>: theirs died.</summary>
    public async Task<IReadOnlyList<QueuedTranscodeJob>> ClaimAbandonedAsync(string consumer, int count)
    {
        var result = await Db.StreamAutoClaimAsync(Jobs, Group, consumer, (long)options.ClaimAfter.TotalMilliseconds, "0-0", count).ConfigureAwait(false);
        return Parse(result.ClaimedEntries);
    }

    /// <summary>"Still mine": resets the idle time of the jobs this worker runs.</summary>
    public Task TouchAsync(string consumer, IReadOnlyList<string> ids) =>
        ids.Count == 0 ? Task.CompletedTask : Db.StreamClaimIdsOnlyAsync(Jobs, Group, consumer, 0, [.. ids.Select(i => (RedisValue)i)]);

    public async Task<bool> IsLiveAsync(string channel) => await Db.KeyExistsAsync(Live(channel)).ConfigureAwait(false);

    /// <summary>The job is over: acknowledged and removed from the stream.</summary>
    public async Task CompleteAsync(string id)
    {
        await Db.StreamAcknowledgeAsync(Jobs, Group, id).ConfigureAwait(false);
        await Db.StreamDeleteAsync(Jobs, [id]).ConfigureAwait(false);
    }

    /// <summary>Jobs queued or running (for autoscaling workers and for metrics).</summary>
    public async Task<long> LengthAsync() => await Db.StreamLengthAsync(Jobs).ConfigureAwait(false);

    private static List<QueuedTranscodeJob> Parse(StreamEntry[] entries)
    {
        var jobs = new List<QueuedTranscodeJob>(entries.Length);
        foreach (var entry in entries)
        {
            if (entry.IsNull)
            {
                continue;
            }

            var text = entry["job"];
            TranscodeJobRequest? request = null;
            try
            {
                request = text.IsNullOrEmpty ? null : JsonSerializer.Deserialize<TranscodeJobRequest>(text.ToString(), Json);
            }
            catch (JsonException)
            {
                // A malformed entry (another version, a hand-made XADD) is completed as empty below.
            }

            jobs.Add(new QueuedTranscodeJob(entry.Id.ToString(), request ?? new TranscodeJobRequest("", "", 0, 0, 0, 0)));
        }

        return jobs;
    }
}
