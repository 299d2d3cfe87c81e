using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Restream.Ingest;
using Restream.Ingest.Hub;
using Restream.Ingest.Rtmp;

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
}

/// <summary>A running transcode job: its ladder and its ffmpeg.</summary>
public sealed record TranscodeJob(string Channel, IReadOnlyList<Rendition> Ladder, FfmpegProcess Ffmpeg, string OutputDirectory);

/// <summary>
/// The embedded transcode worker: when a channel goes live it plans the ladder from the stream's own
/// size and frame rate, pulls the stream back from ingest over RTMP (play by channel name) into one
/// ffmpeg, and stops that ffmpeg when the stream ends or the server stops.
/// </summary>
public sealed partial class TranscodeService(
    StreamRegistry registry, RtmpServer rtmp, IOptions<TranscodeOptions> options, TimeProvider time, ILoggerFactory loggers) : IHostedService
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
            // The ladder follows the source: wait for its sequence headers.
            while (hub.Media is not { Width: > 0 } && !cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), time, cancellationToken).ConfigureAwait(false);
            }

            var media = hub.Media!;
            var seconds = Math.Max(0.5, (time.GetUtcNow() - hub.StartedAt).TotalSeconds);
            var sourceKbps = (int)(hub.BytesIn * 8 / 1000 / seconds);
            var ladder = LadderPlanner.Plan(media.Width, media.Height, media.FrameRate ?? 30, sourceKbps > 100 ? sourceKbps : 0);
            var o = options.Value;
            var output = Path.Combine(OutputRoot, hub.Name);
            if (Directory.Exists(output))
            {
                Directory.Delete(output, recursive: true);
            }

            foreach (var r in ladder)
            {
                Directory.CreateDirectory(Path.Combine(output, r.Name));
            }

            var endpoint = await rtmp.BoundEndpoint.ConfigureAwait(false);
            var input = $"rtmp://127.0.0.1:{endpoint.Port}/live/{hub.Name}";
            var ffmpeg = new FfmpegProcess(hub.Name, HlsCommand.Build(input, output, ladder, o.SegmentSeconds, o.PlaylistSize, o.Preset),
                _log, time);
            var job = new TranscodeJob(hub.Name, ladder, ffmpeg, output);
            if (_jobs.TryGetValue(hub.Name, out var entry))
            {
                _jobs[hub.Name] = entry with { Job = job };
            }

            LogStarted(_log, hub.Name, string.Join(", ", ladder.Select(r => $"{r.Name} {r.Width}x{r.Height}@{r.FrameRate:0.##} {r.VideoKbps}k")));
            await ffmpeg.RunAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
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

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] started: {Ladder}")]
    private static partial void LogStarted(ILogger logger, string channel, string ladder);

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] stopped")]
    private static partial void LogStopped(ILogger logger, string channel);
}
