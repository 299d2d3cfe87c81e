using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Restream.Ingest;
using Restream.Ingest.Hub;
using Restream.Ingest.Rtmp;
using Restream.Coordination;
using StackExchange.Redis;

namespace Restream.Transcode;

/// <summary>Options of the transcode role (<c>Restream:Transcode</c>).</summary>
public sealed class TranscodeOptions
{
    /// <summary>Transcode every channel that goes live.</summary>
    public bool Enabled { get; set; }

    /// <summary>Where HLS output goes, one folder per channel.</summary>
    public string OutputDirectory { get; set; } = "./data/hls";

    public int SegmentSeconds { get; set; } = 2;
    public int PlaylistSize { get; set; } = 6;

    /// <summary>x264 preset: faster presets cost less CPU per rendition.</summary>
    public string Preset { get; set; } = "veryfast";

    /// <summary>
    /// <c>auto</c>: the best encoder the probe finds working (NVENC with CUDA decode and scaling, VA-API,
    /// Quick Sync), else libx264; or one of those names.
    /// </summary>
    public string Encoder { get; set; } = "auto";

    /// <summary>Low-latency HLS: segments are written as parts and media playlists list them (EXT-X-PART).</summary>
    public bool LowLatency { get; set; }

    /// <summary>Length of a low-latency part (PART-TARGET).</summary>
    public double PartSeconds { get; set; } = 0.5;
}

/// <summary>A running transcode job: its ladder and its ffmpeg.</summary>
public sealed record TranscodeJob(string Channel, IReadOnlyList<Rendition> Ladder, FfmpegProcess Ffmpeg, string OutputDirectory);

/// <summary>
/// The ingest side of transcoding: when a channel goes live it describes the job from the stream's
/// own size, frame rate and bitrate. Embedded (no Redis), it runs the job in this process; in a
/// cluster it queues the job on the Redis Stream for the workers and keeps the channel's live marker
/// fresh until the stream ends. Either way the ffmpeg stops when the stream ends or the server stops.
/// </summary>
public sealed partial class TranscodeService(
    StreamRegistry registry, RtmpServer rtmp, IOptions<TranscodeOptions> options, IOptions<CoordinationOptions> coordination,
    IServiceProvider services, TimeProvider time, ILoggerFactory loggers) : IHostedService
{
    private readonly ILogger _log = loggers.CreateLogger<TranscodeService>();
    private readonly ConcurrentDictionary<string, (TranscodeJob? Job, CancellationTokenSource Stop, Task Run)> _jobs = new();

    public TranscodeJob? Find(string channel) => _jobs.TryGetValue(channel, out var j) ? j.Job : null;

    public string OutputRoot => Path.GetFullPath(options.Value.OutputDirectory);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.Enabled)
        {
            registry.StreamStarted += OnStarted;
            registry.StreamEnded += OnEnded;
        }

        return Task.CompletedTask;
    }

    private void OnStarted(StreamHub hub, ChannelConfig channel)
    {
        var stop = new CancellationTokenSource();
        var run = Task.Run(() => RunAsync(hub, stop.Token));
        _jobs[hub.Name] = (null, stop, run);
    }

    private async Task RunAsync(StreamHub hub, CancellationToken cancellationToken)
    {
        try
        {
            var request = await DescribeAsync(hub, cancellationToken).ConfigureAwait(false);
            if (services.GetService(typeof(RedisTranscodeQueue)) is RedisTranscodeQueue queue)
            {
                await QueueAsync(queue, request, cancellationToken).ConfigureAwait(false);
                return;
            }

            var encoder = await TranscodeRunner.ChooseEncoderAsync(options.Value, cancellationToken).ConfigureAwait(false);
            var runner = new TranscodeRunner(request, Path.Combine(OutputRoot, hub.Name), options.Value, encoder, _log, time);
            if (_jobs.TryGetValue(hub.Name, out var entry))
            {
                _jobs[hub.Name] = entry with { Job = runner.Job };
            }

            await runner.RunAsync(fresh: true, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>How long a live stream may go without a usable video size before the log says why it is not transcoded.</summary>
    internal static readonly TimeSpan VideoSizeWait = TimeSpan.FromSeconds(5);

    /// <summary>Why a live stream has no video size to plan a ladder from, in a streamer's words.</summary>
    internal static string WhyNoVideoSize(StreamMediaInfo? media) => media switch
    {
        null or { VideoCodec: null } => "the stream has no video (an audio-only stream gets no ladder)",
        { VideoCodec: not "H264" and var codec } => $"its video is {codec}, whose picture size the server does not read: only H.264 sources are transcoded",
        _ => "its H.264 sequence header gives no usable picture size (damaged, or a size H.264 does not allow)",
    };

    /// <summary>The job as a worker anywhere needs it, once the stream's sequence headers are in.</summary>
    private async Task<TranscodeJobRequest> DescribeAsync(StreamHub hub, CancellationToken cancellationToken)
    {
        // The ladder follows the source: wait for its sequence headers, and say so when they do not come.
        var waitingSince = time.GetTimestamp();
        var warned = false;
        while (hub.Media is not { Width: > 0 } && !cancellationToken.IsCancellationRequested)
        {
            if (!warned && time.GetElapsedTime(waitingSince) >= VideoSizeWait)
            {
                LogNoVideoSize(_log, hub.Name, VideoSizeWait.TotalSeconds, WhyNoVideoSize(hub.Media));
                warned = true;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(100), time, cancellationToken).ConfigureAwait(false);
        }

        var media = hub.Media!;
        if (warned)
        {
            LogVideoSizeAfterAll(_log, hub.Name, media.Width, media.Height);
        }

        // The encoder's own figure (onMetaData videodatarate, kb/s) is better than a guess from the first second.
        var seconds = Math.Max(0.5, (time.GetUtcNow() - hub.StartedAt).TotalSeconds);
        var sourceKbps = hub.Metadata?.GetNumber("videodatarate") is > 0 and var announced
            ? (int)announced
            : (int)(hub.BytesIn * 8 / 1000 / seconds);
        var endpoint = await rtmp.BoundEndpoint.ConfigureAwait(false);
        var host = coordination.Value.Enabled ? coordination.Value.AdvertiseHost : "127.0.0.1";
        return new TranscodeJobRequest(hub.Name, $"rtmp://{host}:{endpoint.Port}/live/{hub.Name}", media.Width, media.Height,
            media.FrameRate ?? 30, sourceKbps > 100 ? sourceKbps : 0);
    }

    /// <summary>Cluster mode: queue the job, then keep the live marker fresh while the stream lasts.</summary>
    private async Task QueueAsync(RedisTranscodeQueue queue, TranscodeJobRequest request, CancellationToken cancellationToken)
    {
        var id = await queue.EnqueueAsync(request).ConfigureAwait(false);
        LogQueued(_log, request.Channel, id);
        try
        {
            var beat = coordination.Value.LiveTtl / 3;
            while (!cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(beat, time, cancellationToken).ConfigureAwait(false);
                try
                {
                    await queue.RefreshLiveAsync(request.Channel).ConfigureAwait(false);
                }
                catch (RedisException e)
                {
                    LogRedisFailed(_log, request.Channel, e.Message); // the multiplexer reconnects; next beat
                }
            }
        }
        finally
        {
            try
            {
                await queue.EndAsync(request.Channel).ConfigureAwait(false);
            }
            catch (RedisException e)
            {
                LogRedisFailed(_log, request.Channel, e.Message); // the marker expires on its own
            }
        }
    }

    private void OnEnded(StreamHub hub)
    {
        if (_jobs.TryRemove(hub.Name, out var entry))
        {
            entry.Stop.Cancel();
            _ = entry.Run.ContinueWith(_ => entry.Stop.Dispose(), TaskScheduler.Default);
            LogStopped(_log, hub.Name);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        registry.StreamStarted -= OnStarted;
        registry.StreamEnded -= OnEnded;
        foreach (var (_, entry) in _jobs)
        {
            await entry.Stop.CancelAsync().ConfigureAwait(false);
        }

        await Task.WhenAll(_jobs.Values.Select(e => e.Run)).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "[transcode {Channel}] no HLS/DASH yet: after {Seconds} s live, {Reason}. The relay to destinations is unaffected; transcoding starts if a usable video header comes")]
    private static partial void LogNoVideoSize(ILogger logger, string channel, double seconds, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] the video size is known after all ({Width}x{Height}): transcoding")]
    private static partial void LogVideoSizeAfterAll(ILogger logger, string channel, int width, int height);

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] stopped")]
    private static partial void LogStopped(ILogger logger, string channel);

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] queued for the workers as job {Id}")]
    private static partial void LogQueued(ILogger logger, string channel, string id);

    [LoggerMessage(Level = LogLevel.Warning, Message = "[transcode {Channel}] Redis: {Error}")]
    private static partial void LogRedisFailed(ILogger logger, string channel, string error);
}
