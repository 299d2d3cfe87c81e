using System.Net;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Restream.Ingest.Hub;
using Restream.Ingest.Rtmp;
using Restream.Media.Ts;

namespace Restream.Ingest.Srt;

/// <summary>
/// The SRT listener: callers publish MPEG-TS with <c>streamid=publish:KEY</c> (or the access-control
/// form <c>#!::r=KEY,m=publish</c>); the TS is demuxed into the same stream hub as RTMP, so SRT
/// feeds fan out to RTMP destinations. libsrt's calls block, so each connection has its own thread.
/// </summary>
public sealed partial class SrtServer(
    IOptions<SrtIngestOptions> options,
    IChannelCatalog catalog,
    IPublishAuthorizer authorizer,
    StreamRegistry registry,
    IngestCounters counters,
    TimeProvider time,
    ILogger<SrtServer> log) : BackgroundService
{
    private const int TimeoutError = 6003;
    private const int WouldBlockError = 6002;
    private const int ConnectionLostError = 2001;
    private const long MinimumReceiveBuffer = 1 << 20;
    private const long RecommendedReceiveBuffer = 16 << 20;
    private static readonly TimeSpan StatsSnapshotInterval = TimeSpan.FromSeconds(1);
    private readonly List<int> _open = [];
    private int _listener = -1;
    private readonly TaskCompletionSource<IPEndPoint?> _bound = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The SRT address listened on once bound; null when SRT is off; faulted when it could not listen.</summary>
    public Task<IPEndPoint?> BoundEndpoint => _bound.Task;

    /// <summary>Parses a streamid into the stream key and whether the caller wants to publish.</summary>
    public static (string? Key, bool Publish) ParseStreamId(string streamId)
    {
        if (streamId.StartsWith("#!::", StringComparison.Ordinal))
        {
            string? resource = null;
            var mode = "request";
            foreach (var pair in streamId[4..].Split(','))
            {
                var kv = pair.Split('=', 2);
                if (kv.Length != 2)
                {
                    continue;
                }

                switch (kv[0])
                {
                    case "r":
                        resource = kv[1];
                        break;
                    case "m":
                        mode = kv[1];
                        break;
                }
            }

            return (resource, mode == "publish");
        }

        if (streamId.StartsWith("publish:", StringComparison.Ordinal))
        {
            return (streamId["publish:".Length..], true);
        }

        return streamId.Length > 0 && !streamId.Contains(':') ? (streamId, true) : (null, false);
    }

    /// <summary>
    /// libsrt asks the kernel for a 12 MB UDP receive buffer, and Linux grants at most net.core.rmem_max (212992 bytes
    /// unless raised). A keyframe burst, or a moment when the receive thread is not scheduled, beyond what fits is lost
    /// in the kernel before libsrt sees it, and must then be repaired within the latency like loss on the wire.
    /// </summary>
    public static string? ReceiveBufferWarning(long? rmemMax) => rmemMax is { } limit and < MinimumReceiveBuffer
        ? $"the kernel caps UDP receive buffers at {limit / 1024} KiB (net.core.rmem_max), so a burst larger than that is lost before SRT sees it " +
          $"and costs retransmissions; raise it with: sysctl -w net.core.rmem_max={RecommendedReceiveBuffer}"
        : null;

    /// <summary>
    /// Why a caller's session ended, in an operator's words. libsrt reports a caller that hung up and a link that went
    /// silent alike (connection lost); the silence before it tells them apart, since a lost link is only declared
    /// after seconds without a packet.
    /// </summary>
    public static string EndReason(int received, SrtException error, TimeSpan sinceLastData) => (received, error.Code) switch
    {
        (0, _) => "the caller closed",
        (_, ConnectionLostError) when sinceLastData < TimeSpan.FromSeconds(1) => "the caller hung up",
        (_, ConnectionLostError) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"the link was lost (nothing received for {sinceLastData.TotalSeconds:0.#} s)"),
        _ => error.Message,
    };

    private static long? ReadKernelLimit(string path)
    {
        try
        {
            return long.TryParse(File.ReadAllText(path).Trim(), System.Globalization.CultureInfo.InvariantCulture, out var value) ? value : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // not Linux, or not readable: nothing to advise
        }
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        if (!o.Enabled)
        {
            _bound.TrySetResult(null);
            return Task.CompletedTask;
        }

        var endpoint = new IPEndPoint(IPAddress.Parse(o.Address), o.Port);
        try
        {
            LibSrt.Startup();
            _listener = LibSrt.srt_create_socket();
            LibSrt.SetInt(_listener, LibSrt.SrtoLatency, o.LatencyMs);
            LibSrt.SetInt(_listener, LibSrt.SrtoOheadBw, Math.Clamp(o.OverheadBandwidthPercent, 5, 100));
            if (!string.IsNullOrEmpty(o.Passphrase))
            {
                LibSrt.SetString(_listener, LibSrt.SrtoPassphrase, o.Passphrase);
                LibSrt.SetInt(_listener, LibSrt.SrtoPbKeyLen, o.KeyLength);
            }

            LibSrt.BindAndListen(_listener, endpoint, 64);
        }
        catch (Exception e)
        {
            _bound.TrySetException(e);
            throw;
        }

        _bound.TrySetResult(endpoint);
        LogListening(log, $"{o.Address}:{o.Port}", o.LatencyMs, string.IsNullOrEmpty(o.Passphrase) ? "off" : $"AES-{o.KeyLength * 8}");
        if (ReceiveBufferWarning(ReadKernelLimit("/proc/sys/net/core/rmem_max")) is { } warning)
        {
            LogSmallReceiveBuffer(log, warning);
        }

        stoppingToken.Register(() =>
        {
            LibSrt.srt_close(_listener);
            lock (_open)
            {
                foreach (var socket in _open)
                {
                    LibSrt.srt_close(socket);
                }
            }
        });

        return Task.Factory.StartNew(() => AcceptLoop(stoppingToken), stoppingToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    private void AcceptLoop(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            int socket;
            string remote;
            try
            {
                (socket, remote) = LibSrt.Accept(_listener);
            }
            catch (SrtException e)
            {
                if (!stoppingToken.IsCancellationRequested)
                {
                    LogAcceptFailed(log, e.Message);
                }

                continue;
            }

            counters.OnAccepted();
            lock (_open)
            {
                _open.Add(socket);
            }

            _ = Task.Factory.StartNew(() => ServeAsync(socket, remote, stoppingToken), stoppingToken, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        }
    }

    private async Task ServeAsync(int socket, string remote, CancellationToken stoppingToken)
    {
        StreamHub? hub = null;
        TsDemuxer? demuxer = null;
        SrtStats? lastStats = null;
        var label = "-";
        try
        {
            var (key, publish) = ParseStreamId(LibSrt.GetString(socket, LibSrt.SrtoStreamId));
            if (!publish || string.IsNullOrEmpty(key))
            {
                LogRefused(log, remote, "the streamid does not ask to publish (use publish:KEY or #!::r=KEY,m=publish)");
                return;
            }

            var channel = await catalog.FindByStreamKeyAsync(key, stoppingToken).ConfigureAwait(false);
            if (channel is null)
            {
                counters.OnRejectedKey();
                LogRefused(log, remote, "unknown stream key");
                return;
            }

            label = $"srt/{channel.Name}";
            if (await authorizer.AuthorizeAsync(channel, remote, stoppingToken).ConfigureAwait(false) is { } denied)
            {
                LogRefused(log, remote, denied);
                return;
            }

            if (!registry.TryStart(channel, remote, time, out hub))
            {
                LogRefused(log, remote, $"{channel.Name} is already live from {hub.PublisherRemote}");
                hub = null;
                return;
            }

            using var kick = hub.StopRequested.Register(() => LibSrt.srt_close(socket));
            hub.LinkStats = () => LibSrt.Stats(socket) is { } s
                ? new IngestLinkStats("srt", s.MsRtt, s.PktRecvTotal, s.PktRcvLossTotal, s.PktRcvRetrans, s.PktRcvDropTotal, s.MbpsRecvRate, s.MbpsBandwidth)
                : null;
            LogStarted(log, label, remote);
            LibSrt.SetInt(socket, LibSrt.SrtoRcvTimeo, 1000);
            var live = hub;
            demuxer = new TsDemuxer(live.Publish);
            var buffer = new byte[1500];
            var lastData = time.GetTimestamp();
            var lastSnapshot = lastData;
            while (!stoppingToken.IsCancellationRequested)
            {
                var received = LibSrt.Receive(socket, buffer);
                if (received > 0)
                {
                    lastData = time.GetTimestamp();
                    demuxer.Feed(buffer.AsSpan(0, received));
                    if (time.GetElapsedTime(lastSnapshot, lastData) >= StatsSnapshotInterval)
                    {
                        // libsrt refuses srt_bstats once the connection is broken: keep a recent copy for the summary.
                        lastSnapshot = lastData;
                        lastStats = LibSrt.Stats(socket) ?? lastStats;
                    }

                    continue;
                }

                var error = LibSrt.LastError();
                if (received < 0 && error.Code is TimeoutError or WouldBlockError)
                {
                    if (time.GetElapsedTime(lastData) > options.Value.IdleTimeout)
                    {
                        LogEnded(log, label, remote, $"nothing received for {options.Value.IdleTimeout.TotalSeconds:0.#} s");
                        return;
                    }

                    continue;
                }

                demuxer.Flush();
                LogEnded(log, label, remote, EndReason(received, error, time.GetElapsedTime(lastData)));
                return;
            }
        }
        catch (SrtException e)
        {
            LogEnded(log, label, remote, e.Message);
        }
        catch (Exception e)
        {
            // A bug in one publisher's handling ends that publisher, logged, and nothing else.
            counters.OnInternalError();
            LogInternalError(log, label, remote, e);
        }
        finally
        {
            if (hub is not null)
            {
                // What the link went through, once per session: how much loss libsrt repaired, and what came too late to repair.
                if ((LibSrt.Stats(socket) ?? lastStats) is { } s)
                {
                    LogLinkSummary(log, label, s.PktRecvTotal, s.PktRcvLossTotal, s.PktRcvRetrans, s.PktRcvDropTotal, demuxer?.ContinuityErrors ?? 0, s.MsRtt);
                }

                registry.Stop(hub);
            }

            lock (_open)
            {
                _open.Remove(socket);
            }

            LibSrt.srt_close(socket);
            counters.OnClosed();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "SRT ingest listening on {Endpoint}/udp, latency {Latency} ms, encryption {Encryption}")]
    private static partial void LogListening(ILogger logger, string endpoint, int latency, string encryption);

    [LoggerMessage(Level = LogLevel.Warning, Message = "SRT ingest: {Advice}")]
    private static partial void LogSmallReceiveBuffer(ILogger logger, string advice);

    [LoggerMessage(Level = LogLevel.Warning, Message = "SRT accept failed: {Error}")]
    private static partial void LogAcceptFailed(ILogger logger, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "SRT publish refused from {Remote}: {Reason}")]
    private static partial void LogRefused(ILogger logger, string remote, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] SRT publisher {Remote} started")]
    private static partial void LogStarted(ILogger logger, string stream, string remote);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] SRT link: {Received} packets received, {Lost} lost, {Retransmitted} retransmitted, {TooLate} too late to repair, {ContinuityErrors} TS continuity errors, RTT {Rtt:0.#} ms")]
    private static partial void LogLinkSummary(ILogger logger, string stream, long received, long lost, long retransmitted, long tooLate, long continuityErrors, double rtt);

    [LoggerMessage(Level = LogLevel.Error, Message = "[stream {Stream}] SRT publisher {Remote}: internal error (a bug: please report it with this log); other streams are unaffected")]
    private static partial void LogInternalError(ILogger logger, string stream, string remote, Exception error);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] SRT publisher {Remote} stopped: {Reason}")]
    private static partial void LogEnded(ILogger logger, string stream, string remote, string reason);
}
