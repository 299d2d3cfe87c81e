using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Restream.Coordination;
using StackExchange.Redis;

namespace Restream.Transcode;

/// <summary>
/// The cluster transcode worker: takes jobs from the Redis Stream (new ones, and those a dead worker
/// left behind), runs each with a <see cref="TranscodeRunner"/>, tells the queue twice a second that
/// it still holds them, and completes a job when its channel is no longer live. Its ffmpegs stop
/// with it; if it is killed outright, another worker claims its jobs after
/// <see cref="CoordinationOptions.ClaimAfter"/>.
/// </summary>
public sealed partial class TranscodeWorker(
    RedisTranscodeQueue queue, IOptions<TranscodeOptions> transcode, IOptions<CoordinationOptions> coordination, TimeProvider time,
    ILogger<TranscodeWorker> log) : BackgroundService
{
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(500);
    private readonly Dictionary<string, Running> _running = [];

    private sealed record Running(QueuedTranscodeJob Queued, TranscodeRunner Runner, CancellationTokenSource Stop, Task Task);

    /// <summary>The channels this worker transcodes now.</summary>
    public IReadOnlyList<string> Channels
    {
        get
        {
            lock (_running)
            {
                return [.. _running.Keys];
            }
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var me = coordination.Value.NodeId;
        LogReady(log, me);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await queue.EnsureGroupAsync().ConfigureAwait(false);
                await RoundAsync(me, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                LogRedisFailed(log, e.Message); // the multiplexer reconnects; running jobs go on meanwhile
            }

            try
            {
                await Task.Delay(Tick, time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        List<Running> all;
        lock (_running)
        {
            all = [.. _running.Values];
        }

        foreach (var job in all)
        {
            await job.Stop.CancelAsync().ConfigureAwait(false);
        }

        await Task.WhenAll(all.Select(j => j.Task)).ConfigureAwait(false);
    }

    private async Task RoundAsync(string me, CancellationToken stoppingToken)
    {
        // 1. Keep what is ours, finish what ended.
        List<Running> running;
        lock (_running)
        {
            running = [.. _running.Values];
        }

        var keep = new List<string>();
        foreach (var job in running)
        {
            if (job.Task.IsCompleted || !await queue.IsLiveAsync(job.Queued.Request.Channel).ConfigureAwait(false))
            {
                await FinishAsync(job).ConfigureAwait(false);
            }
            else
            {
                keep.Add(job.Queued.Id);
            }
        }

        await queue.TouchAsync(me, keep).ConfigureAwait(false);

        // 2. Take more while there is room: first jobs a dead worker left, then new ones.
        var room = coordination.Value.MaxJobsPerWorker - keep.Count;
        if (room <= 0)
        {
            return;
        }

        foreach (var job in await queue.ClaimAbandonedAsync(me, room).ConfigureAwait(false))
        {
            room -= await StartAsync(job, fresh: false, stoppingToken).ConfigureAwait(false) ? 1 : 0;
        }

        if (room > 0)
        {
            foreach (var job in await queue.ReadNewAsync(me, room).ConfigureAwait(false))
            {
                await StartAsync(job, fresh: true, stoppingToken).ConfigureAwait(false);
            }
        }
    }

    private async Task<bool> StartAsync(QueuedTranscodeJob job, bool fresh, CancellationToken stoppingToken)
    {
        var request = job.Request;
        bool duplicate;
        lock (_running)
        {
            duplicate = _running.ContainsKey(request.Channel);
        }

        if (request.Channel.Length == 0 || request.Width <= 0 || duplicate || !await queue.IsLiveAsync(request.Channel).ConfigureAwait(false))
        {
            // Malformed, already running here, or its stream is over: nothing to do but clear it away.
            await queue.CompleteAsync(job.Id).ConfigureAwait(false);
            return false;
        }

        var output = Path.Combine(Path.GetFullPath(transcode.Value.OutputDirectory), request.Channel);
        var encoder = await TranscodeRunner.ChooseEncoderAsync(transcode.Value, stoppingToken).ConfigureAwait(false);
        var runner = new TranscodeRunner(request, output, transcode.Value, encoder, log, time);
        var stop = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var task = Task.Run(() => runner.RunAsync(fresh, stop.Token), CancellationToken.None);
        lock (_running)
        {
            _running[request.Channel] = new Running(job, runner, stop, task);
        }

        LogTaken(log, request.Channel, job.Id, fresh ? "new" : "abandoned by its worker");
        return true;
    }

    private async Task FinishAsync(Running job)
    {
        await job.Stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await job.Task.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        lock (_running)
        {
            _running.Remove(job.Queued.Request.Channel);
        }

        job.Stop.Dispose();
        await queue.CompleteAsync(job.Queued.Id).ConfigureAwait(false);
        LogFinished(log, job.Queued.Request.Channel, job.Queued.Id);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "transcode worker {Node} waiting for jobs")]
    private static partial void LogReady(ILogger logger, string node);

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] job {Id} taken ({How})")]
    private static partial void LogTaken(ILogger logger, string channel, string id, string how);

    [LoggerMessage(Level = LogLevel.Information, Message = "[transcode {Channel}] job {Id} done: the stream ended")]
    private static partial void LogFinished(ILogger logger, string channel, string id);

    [LoggerMessage(Level = LogLevel.Warning, Message = "transcode worker: Redis: {Error}")]
    private static partial void LogRedisFailed(ILogger logger, string error);
}
