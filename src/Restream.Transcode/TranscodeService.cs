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
            // The encoder's own figure (onMetaData videodatarate, kb/s) is better than a guess from the first second.
            var seconds = Math.Max(0.5, (time.GetUtcNow() - hub.StartedAt).TotalSeconds);
            var sourceKbps = hub.Metadata?.GetNumber("videodatarate") is > 0 and var announced
                ? (int)announced
                : (int)(hub.BytesIn * 8 / 1000 / seconds);
            var ladder = LadderPlanner.Plan(media.Width, media.Height, media.FrameRate ?? 30, sourceKbps > 100 ? sourceKbps : 0);
            var o = options.Value;
            var output = Path.Combine(OutputRoot, hub.Name);
            if (Directory.Exists(output))
            {
                Directory.Delete(output, recursive: true);
            }

            Directory.CreateDirectory(output);

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
            var publishing = PublishMasterAsync(output, ladder, cancellationToken);
            await ffmpeg.RunAsync(cancellationToken).ConfigureAwait(false);
            await publishing.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Republishes ffmpeg's master playlist as master.m3u8 with FRAME-RATE, whenever ffmpeg rewrites it.</summary>
    private async Task PublishMasterAsync(string output, IReadOnlyList<Rendition> ladder, CancellationToken cancellationToken)
    {
        var source = Path.Combine(output, HlsCommand.FfmpegMasterName);
        var target = Path.Combine(output, "master.m3u8");
        var written = DateTime.MinValue;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var stamp = File.Exists(source) ? File.GetLastWriteTimeUtc(source) : DateTime.MinValue;
                if (stamp != DateTime.MinValue && stamp != written)
                {
                    var text = HlsCommand.AddFrameRates(await File.ReadAllTextAsync(source, cancellationToken).ConfigureAwait(false), ladder);
                    var temporary = target + ".tmp";
                    await File.WriteAllTextAsync(temporary, text, cancellationToken).ConfigureAwait(false);
                    File.Move(temporary, target, overwrite: true); // players never see a half-written playlist
                    written = stamp;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(250), time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (IOException)
            {
                // ffmpeg was rewriting it: next round.
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

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] started: {Ladder}")]
    private static partial void LogStarted(ILogger logger, string channel, string ladder);

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] stopped")]
    private static partial void LogStopped(ILogger logger, string channel);
}
