using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Restream.Ingest.Hub;
using Restream.Ingest.Rtmp;

namespace Restream.Transcode;

/// <summary>A recording in progress or done.</summary>
public sealed record Recording(string Channel, string File, DateTimeOffset StartedAt);

/// <summary>
/// Records a live stream's source, as published, to fragmented MP4 on request (stream copy: no
/// re-encoding). Fragmented so the file plays even if the recording is cut short. Stops on request,
/// when the stream ends, or when the server stops.
/// </summary>
public sealed partial class RecordingService(StreamRegistry registry, RtmpServer rtmp, IOptions<TranscodeOptions> options, TimeProvider time,
    ILoggerFactory loggers) : IHostedService
{
    private readonly ILogger _log = loggers.CreateLogger<RecordingService>();
    private readonly ConcurrentDictionary<string, (Recording Recording, CancellationTokenSource Stop, Task Run)> _active = new();

    public string Directory => Path.GetFullPath(Path.Combine(options.Value.OutputDirectory, "..", "recordings"));

    public Recording? Active(string channel) => _active.TryGetValue(channel, out var a) ? a.Recording : null;

    /// <summary>Starts recording a live channel; null when it is not live, the running one when already recording.</summary>
    public async Task<Recording?> StartAsync(string channel)
    {
        if (registry.Find(channel) is null)
        {
            return null;
        }

        if (_active.TryGetValue(channel, out var running))
        {
            return running.Recording;
        }

        System.IO.Directory.CreateDirectory(Directory);
        var now = time.GetUtcNow();
        var file = Path.Combine(Directory, $"{channel}-{now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}.mp4");
        var port = (await rtmp.BoundEndpoint.ConfigureAwait(false)).Port;
        var ffmpeg = new FfmpegProcess($"record {channel}",
        [
            "-hide_banner", "-nostdin", "-loglevel", "warning", "-progress", "pipe:1", "-rw_timeout", "10000000",
            "-i", $"rtmp://127.0.0.1:{port}/live/{channel}", "-c", "copy", "-map", "0",
            "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "-y", file,
        ], _log, time);
        var stop = new CancellationTokenSource();
        var recording = new Recording(channel, file, now);
        var run = Task.Run(async () =>
        {
            try
            {
                await ffmpeg.RunOnceAsync(stop.Token).ConfigureAwait(false);
            }
            finally
            {
                _active.TryRemove(channel, out _);
                LogStopped(_log, channel, Path.GetFileName(file));
            }
        });
        _active[channel] = (recording, stop, run);
        LogStarted(_log, channel, Path.GetFileName(file));
        return recording;
    }

    /// <summary>Stops a recording; false when none was running.</summary>
    public async Task<bool> StopAsync(string channel)
    {
        if (!_active.TryGetValue(channel, out var active))
        {
            return false;
        }

        await active.Stop.CancelAsync().ConfigureAwait(false);
        await active.Run.ConfigureAwait(false);
        active.Stop.Dispose();
        return true;
    }

    public IReadOnlyList<FileInfo> Files() =>
        System.IO.Directory.Exists(Directory) ? [.. new DirectoryInfo(Directory).GetFiles("*.mp4").OrderByDescending(f => f.CreationTimeUtc)] : [];

    public Task StartAsync(CancellationToken cancellationToken)
    {
        registry.StreamEnded += OnEnded;
        return Task.CompletedTask;
    }

    private void OnEnded(StreamHub hub) => _ = StopAsync(hub.Name);

    async Task IHostedService.StopAsync(CancellationToken cancellationToken)
    {
        registry.StreamEnded -= OnEnded;
        foreach (var channel in _active.Keys.ToList())
        {
            await StopAsync(channel).ConfigureAwait(false);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Channel}] recording to {File}")]
    private static partial void LogStarted(ILogger logger, string channel, string file);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Channel}] recording {File} stopped")]
    private static partial void LogStopped(ILogger logger, string channel, string file);
}
