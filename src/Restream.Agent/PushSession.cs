using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Restream.Ingest;
using Restream.Ingest.Hub;
using Restream.Media;
using Restream.Media.Amf;
using Restream.Media.Flv;
using Restream.Relay;

namespace Restream.Agent;

/// <summary>One status line: what the streamer sees in the panel, or a JSON line with <c>--json</c>.</summary>
public sealed record AgentStatus(
    string State, string Encoder, double CaptureFps, double EncodeFps, double Speed, double SendKbps,
    long DroppedFrames, long DuplicatedFrames, long FramesSent, long BytesSent, long Reconnects, long CaptureRestarts,
    double UptimeSeconds, double LiveSeconds, string? LastError, string Server);

/// <summary>
/// Goes live: ffmpeg captures, draws overlays and encodes into FLV on its standard output; the
/// session reads the tags into a local <see cref="StreamHub"/> (which keeps the sequence headers and
/// the newest GOP), and a <see cref="DestinationPusher"/> — the same client the server relays with —
/// pushes them to the ingest. A network drop therefore never restarts capture or encoding: the
/// pusher reconnects with backoff and resumes at the newest keyframe. If ffmpeg itself stops, it is
/// restarted with backoff and timestamps carry on where they were.
/// </summary>
public sealed partial class PushSession
{
    private readonly CapturePlan _plan;
    private readonly IReadOnlyList<string> _arguments;
    private readonly IReadOnlyList<DestinationConfig> _ingests;
    private volatile DestinationConfig _ingest;
    private (long Bytes, long Frames, long Dropped, long Reconnects) _carried;
    private readonly RelayOptions _relay;
    private readonly System.Security.Cryptography.X509Certificates.X509Certificate2Collection? _trust;
    private readonly TimeProvider _time;
    private readonly ILoggerFactory _logs;
    private readonly ILogger _log;
    private readonly long _started;
    private readonly Dictionary<string, string> _progress = [];
    private readonly Lock _gate = new();
    private DestinationPusher? _pusher;
    private Process? _ffmpeg;
    private long _captureRestarts;
    private uint _timestampOffset;
    private uint _lastTimestamp;
    private (long Timestamp, long Frames, long Dropped, long Duplicated, long Bytes) _previous;
    private volatile string? _captureError;
    private volatile bool _stopping;

    public PushSession(CapturePlan plan, Uri server, string streamKey, int bufferSeconds, TimeProvider time, ILoggerFactory logs,
        string? trustedCertificateFile = null, IReadOnlyList<Uri>? fallbacks = null)
    {
        _trust = CertificateTrust.Load(trustedCertificateFile);
        _plan = plan;
        _arguments = CaptureCommand.Build(plan with { WallclockBase = Math.Floor(time.GetUtcNow().ToUnixTimeMilliseconds() / 1000.0) });
        _ingests = [.. new[] { server }.Concat(fallbacks ?? []).Select((u, i) => new DestinationConfig($"ingest{i}", "ingest", u, streamKey, true))];
        _ingest = _ingests[0];
        _time = time;
        _logs = logs;
        _log = logs.CreateLogger("agent");
        _started = time.GetTimestamp();
        _previous = (_started, 0, 0, 0, 0);
        var bytesPerSecond = (plan.Settings.VideoKbps + plan.Settings.AudioKbps) * 125L;
        _relay = new RelayOptions
        {
            InitialBackoff = TimeSpan.FromMilliseconds(500),
            MaxBackoff = TimeSpan.FromSeconds(5),
            RejectedBackoff = TimeSpan.FromSeconds(10),
            ConnectTimeout = TimeSpan.FromSeconds(5),
            // While the link is slow the queue holds this much; beyond it whole GOPs are dropped.
            QueueBytes = Math.Max(bytesPerSecond * bufferSeconds, 1 << 20),
            QueueFrames = Math.Max(plan.Fps * bufferSeconds * 3, 256),
        };
    }

    /// <summary>The ffmpeg arguments (for <c>--dry-run</c> and the log).</summary>
    public IReadOnlyList<string> Arguments => _arguments;

    /// <summary>The ffmpeg process now running, if any.</summary>
    public int? FfmpegProcessId => _ffmpeg is { HasExited: false } p ? p.Id : null;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var hub = new StreamHub("agent", "agent", "capture", _time);
        using var pushing = new CancellationTokenSource();
        var pusher = PushAsync(hub, pushing.Token);
        try
        {
            await CaptureAsync(hub, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _stopping = true;
            // Capture has stopped: what is queued goes out, then the pusher says goodbye (unpublish).
            hub.End();
            pushing.CancelAfter(TimeSpan.FromSeconds(3));
            await pusher.ConfigureAwait(false);
        }
    }

    /// <summary>Failed attempts in a row on one ingest before the next one in the list is tried.</summary>
    public const int FailuresBeforeFailover = 3;

    /// <summary>
    /// Pushes to the first ingest; with fallbacks, moves on to the next after
    /// <see cref="FailuresBeforeFailover"/> failed attempts in a row, round the list, resuming at the newest keyframe.
    /// </summary>
    private async Task PushAsync(StreamHub hub, CancellationToken cancellationToken)
    {
        var index = 0;
        while (!hub.Ended && !cancellationToken.IsCancellationRequested)
        {
            var ingest = _ingests[index];
            _ingest = ingest;
            var pusher = new DestinationPusher(hub, ingest, _relay, _trust, _time, _logs.CreateLogger<DestinationPusher>());
            pusher.StateChanged += (_, state) => LogState(_log, Describe(state), ingest.SafeUrl);
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            _pusher = pusher;
            var run = pusher.RunAsync(attempt.Token);
            var failuresBefore = 0L;
            var wasLive = false;
            while (!run.IsCompleted)
            {
                await Task.WhenAny(run, Task.Delay(TimeSpan.FromMilliseconds(250), _time, CancellationToken.None)).ConfigureAwait(false);
                var status = pusher.GetStatus();
                if (status.State == DestinationState.Live)
                {
                    wasLive = true;
                    failuresBefore = status.Reconnects; // count failures since it was last live
                }

                if (_ingests.Count > 1 && status.State != DestinationState.Live && status.Reconnects - failuresBefore >= FailuresBeforeFailover)
                {
                    index = (index + 1) % _ingests.Count;
                    LogFailover(_log, ingest.SafeUrl, _ingests[index].SafeUrl, status.LastError ?? (wasLive ? "lost" : "unreachable"));
                    await attempt.CancelAsync().ConfigureAwait(false);
                    break;
                }
            }

            await run.ConfigureAwait(false);
            var final = pusher.GetStatus();
            _carried = (_carried.Bytes + final.BytesSent, _carried.Frames + final.FramesSent, _carried.Dropped + final.FramesDropped,
                _carried.Reconnects + final.Reconnects);
            if (ReferenceEquals(_ingests[index], ingest))
            {
                break; // the pusher ended with the stream or was stopped: no failover
            }
        }
    }

    /// <summary>Runs ffmpeg until cancelled, restarting it with backoff when it stops on its own.</summary>
    private async Task CaptureAsync(StreamHub hub, CancellationToken cancellationToken)
    {
        var delay = TimeSpan.FromSeconds(1);
        while (!cancellationToken.IsCancellationRequested)
        {
            var started = _time.GetTimestamp();
            var code = await RunFfmpegOnceAsync(hub, cancellationToken).ConfigureAwait(false);
            if (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            Interlocked.Increment(ref _captureRestarts);
            LogCaptureStopped(_log, code, _captureError ?? "no error output", delay.TotalSeconds);
            if (_time.GetElapsedTime(started) > TimeSpan.FromSeconds(30))
            {
                delay = TimeSpan.FromSeconds(1);
            }

            try
            {
                await Task.Delay(delay, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            delay = TimeSpan.FromSeconds(Math.Min(delay.TotalSeconds * 2, 10));
            // The new ffmpeg starts its clock at zero: carry on after the last frame sent.
            _timestampOffset = _lastTimestamp + (uint)(1000 / Math.Max(1, _plan.Fps));
        }
    }

    private async Task<int> RunFfmpegOnceAsync(StreamHub hub, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo("ffmpeg")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // Each run measures its capture clock from its own start.
        var plan = _plan with { WallclockBase = Math.Floor(_time.GetUtcNow().ToUnixTimeMilliseconds() / 1000.0) };
        foreach (var argument in CaptureCommand.Build(plan))
        {
            info.ArgumentList.Add(argument);
        }

        using var process = new Process { StartInfo = info };
        process.ErrorDataReceived += (_, e) => OnStderr(e.Data);
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception)
        {
            _captureError = "ffmpeg not found: install it (apt install ffmpeg / winget install ffmpeg) and run restream-agent doctor";
            return -1;
        }

        _ffmpeg = process;
        process.BeginErrorReadLine();
        // If the agent dies, ffmpeg's next write to this pipe fails and it exits: no orphan is left.
        var reader = PipeReader.Create(process.StandardOutput.BaseStream, new StreamPipeReaderOptions(bufferSize: 256 * 1024, minimumReadSize: 64 * 1024));
        try
        {
            await ReadFlvAsync(reader, hub, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (FormatException e)
        {
            _captureError = "ffmpeg wrote something that is not FLV: " + e.Message;
        }
        finally
        {
            Kill(process);
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            await reader.CompleteAsync().ConfigureAwait(false);
            _ffmpeg = null;
        }

        return process.ExitCode;
    }

    private async Task ReadFlvAsync(PipeReader reader, StreamHub hub, CancellationToken cancellationToken)
    {
        var headerRead = false;
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var consumed = Consume(buffer, hub, ref headerRead);
            reader.AdvanceTo(consumed, buffer.End);
            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    private SequencePosition Consume(ReadOnlySequence<byte> buffer, StreamHub hub, ref bool headerRead)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (!headerRead)
        {
            if (!FlvReader.TryReadFileHeader(ref reader, out _, out _))
            {
                return reader.Position;
            }

            headerRead = true;
        }

        while (FlvReader.TryReadTag(ref reader, out var header, out var body))
        {
            var timestamp = header.Timestamp + _timestampOffset;
            switch (header.Type)
            {
                case FlvTagType.Audio or FlvTagType.Video when body.Length > 0:
                    var pooled = MediaBuffers.Pool.Rent((int)body.Length);
                    body.CopyTo(pooled);
                    _lastTimestamp = Math.Max(_lastTimestamp, timestamp);
                    hub.Publish(MediaFrame.Create((MediaKind)header.Type, timestamp, pooled, (int)body.Length));
                    break;
                case FlvTagType.Script:
                    PublishMetadata(hub, body, timestamp);
                    break;
            }
        }

        return reader.Position;
    }

    private static void PublishMetadata(StreamHub hub, ReadOnlySequence<byte> body, uint timestamp)
    {
        try
        {
            var amf = new AmfReader(body);
            if (amf.ReadValue() as string == "onMetaData" && !amf.End && amf.ReadValue() is AmfObject metadata)
            {
                hub.SetMetadata(StreamHub.CreateMetadataFrame(timestamp, metadata), metadata);
            }
        }
        catch (AmfException)
        {
            // Metadata is a courtesy; the stream goes on without it.
        }
    }

    private void OnStderr(string? line)
    {
        if (string.IsNullOrWhiteSpace(line))
        {
            return;
        }

        var eq = line.IndexOf('=');
        if (eq > 0 && !line.Contains(' ', StringComparison.Ordinal) && !line.StartsWith('['))
        {
            lock (_gate)
            {
                _progress[line[..eq]] = line[(eq + 1)..];
            }

            return;
        }

        _captureError = line.Trim();
        LogFfmpeg(_log, line.Trim());
    }

    /// <summary>The figures now; rates are measured since the previous call.</summary>
    public AgentStatus Snapshot()
    {
        var pusher = _pusher?.GetStatus();
        long frames, dropped, duplicated;
        double speed;
        lock (_gate)
        {
            frames = Long("frame");
            dropped = Long("drop_frames");
            duplicated = Long("dup_frames");
            speed = double.TryParse(_progress.GetValueOrDefault("speed", "0").TrimEnd('x'), NumberStyles.Float, CultureInfo.InvariantCulture, out var s) ? s : 0;
        }

        var now = _time.GetTimestamp();
        var carried = _carried;
        var bytes = (pusher?.BytesSent ?? 0) + carried.Bytes;
        var seconds = Math.Max(0.001, _time.GetElapsedTime(_previous.Timestamp, now).TotalSeconds);
        // ffmpeg counts output frames; captured frames are those plus the ones it dropped, less its duplicates.
        var encodeFps = Math.Max(0, frames - _previous.Frames) / seconds;
        var captureFps = Math.Max(0, (frames + dropped - duplicated) - (_previous.Frames + _previous.Dropped - _previous.Duplicated)) / seconds;
        var sendKbps = Math.Max(0, bytes - _previous.Bytes) * 8 / 1000.0 / seconds;
        _previous = (now, frames, dropped, duplicated, bytes);
        var state = _stopping ? "stopping" : _ffmpeg is null ? "capture-restarting" : pusher is null ? "starting" : Describe(pusher.State);
        if (_stopping && pusher?.State is DestinationState.Idle)
        {
            state = "stopped";
        }

        return new AgentStatus(state, _plan.Encoder, Math.Round(captureFps, 1), Math.Round(encodeFps, 1), speed, Math.Round(sendKbps),
            dropped + (pusher?.FramesDropped ?? 0) + carried.Dropped, duplicated, (pusher?.FramesSent ?? 0) + carried.Frames, bytes,
            (pusher?.Reconnects ?? 0) + carried.Reconnects, Interlocked.Read(ref _captureRestarts), Math.Round(_time.GetElapsedTime(_started).TotalSeconds, 1),
            Math.Round(pusher?.Uptime.TotalSeconds ?? 0, 1), pusher?.LastError ?? (_ffmpeg is null ? _captureError : null), _ingest.SafeUrl);

        long Long(string key) => long.TryParse(_progress.GetValueOrDefault(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : 0;
    }

    /// <summary>Destination states in the streamer's words.</summary>
    public static string Describe(DestinationState state) => state switch
    {
        DestinationState.Idle => "stopped",
        DestinationState.Connecting => "connecting",
        DestinationState.Live => "live",
        DestinationState.Retrying => "reconnecting",
        DestinationState.Failed => "refused",
        _ => state.ToString().ToLowerInvariant(),
    };

    private static void Kill(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "ingest {Url} failed ({Error}): switching to {Next}")]
    private static partial void LogFailover(ILogger logger, string url, string next, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "ingest {Url}: {State}")]
    private static partial void LogState(ILogger logger, string state, string url);

    [LoggerMessage(Level = LogLevel.Warning, Message = "capture stopped (ffmpeg exit {Code}): {Error}; starting it again in {Delay} s")]
    private static partial void LogCaptureStopped(ILogger logger, int code, string error, double delay);

    [LoggerMessage(Level = LogLevel.Warning, Message = "ffmpeg: {Line}")]
    private static partial void LogFfmpeg(ILogger logger, string line);
}
