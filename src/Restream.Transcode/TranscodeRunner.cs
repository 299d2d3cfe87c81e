using Microsoft.Extensions.Logging;
using Restream.Coordination;

namespace Restream.Transcode;

/// <summary>
/// Runs one channel's ladder: plans it from the job's source figures, starts the single-decode
/// ffmpeg that pulls the live stream over RTMP and writes HLS + DASH, and republishes ffmpeg's master
/// playlist with FRAME-RATE. Used by the embedded transcoder and by cluster workers alike.
/// </summary>
public sealed partial class TranscodeRunner
{
    private readonly TranscodeJobRequest _request;
    private readonly TimeProvider _time;
    private readonly ILogger _log;

    public TranscodeRunner(TranscodeJobRequest request, string outputDirectory, TranscodeOptions options, LadderEncoder encoder, ILogger log, TimeProvider time)
    {
        _request = request;
        _time = time;
        _log = log;
        var ladder = LadderPlanner.Plan(request.Width, request.Height, request.FrameRate, request.SourceKbps);
        var ffmpeg = new FfmpegProcess(request.Channel,
            HlsCommand.Build(request.InputUrl, outputDirectory, ladder, options.SegmentSeconds, options.PlaylistSize, options.Preset, encoder,
                options.LowLatency ? options.PartSeconds : 0), log, time);
        Job = new TranscodeJob(request.Channel, ladder, ffmpeg, outputDirectory);
        Encoder = encoder;
    }

    public LadderEncoder Encoder { get; }

    /// <summary>The ladder encoder for these options on this host (the probe runs once per process).</summary>
    public static async Task<LadderEncoder> ChooseEncoderAsync(TranscodeOptions options, CancellationToken cancellationToken)
    {
        if (options.Encoder == "libx264")
        {
            return LadderEncoder.Cpu;
        }

        var report = await EncoderProbe.ProbeAsync(cancellationToken).ConfigureAwait(false);
        var filters = await EncoderProbe.FiltersAsync(cancellationToken).ConfigureAwait(false);
        return LadderEncoder.Choose(options.Encoder, report, filters);
    }

    public TranscodeJob Job { get; }

    /// <summary>
    /// Runs until cancelled. <paramref name="fresh"/>: a new stream, so what an earlier stream left in
    /// the folder goes; a job taken over from a dead worker keeps the folder, and players keep going.
    /// </summary>
    public async Task RunAsync(bool fresh, CancellationToken cancellationToken)
    {
        var output = Job.OutputDirectory;
        if (fresh && Directory.Exists(output))
        {
            Directory.Delete(output, recursive: true);
        }

        Directory.CreateDirectory(output);
        LogStarted(_log, _request.Channel, fresh ? "started" : "taken over", Encoder.Name, Encoder.Frames.ToString(),
            string.Join(", ", Job.Ladder.Select(r => $"{r.Name} {r.Width}x{r.Height}@{r.FrameRate:0.##} {r.VideoKbps}k")));
        var publishing = PublishMasterAsync(output, Job.Ladder, cancellationToken);
        await Job.Ffmpeg.RunAsync(cancellationToken).ConfigureAwait(false);
        await publishing.ConfigureAwait(false);
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

                await Task.Delay(TimeSpan.FromMilliseconds(250), _time, cancellationToken).ConfigureAwait(false);
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

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] {How} with {Encoder} (GPU frames: {Frames}): {Ladder}")]
    private static partial void LogStarted(ILogger logger, string channel, string how, string encoder, string frames, string ladder);
}
