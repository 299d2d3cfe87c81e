using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Restream.Ingest;
using Restream.Ingest.Hub;
using Restream.Ingest.Rtmp;
using Restream.Media;
using Restream.Media.Rtmp;

namespace Restream.Relay;

/// <summary>Where a destination stands.</summary>
public enum DestinationState
{
    /// <summary>Not started (the stream is not live, or the destination is disabled).</summary>
    Idle,
    /// <summary>Opening the connection and publishing.</summary>
    Connecting,
    /// <summary>Publishing; frames flow.</summary>
    Live,
    /// <summary>Lost or could not reach the destination; trying again soon.</summary>
    Retrying,
    /// <summary>The destination refused us (wrong key, unknown app); trying again after a long wait.</summary>
    Failed,
}

/// <summary>A point-in-time view of one destination of a live stream.</summary>
public sealed record DestinationStatus(
    string Id, string Name, string Url, DestinationState State, long BytesSent, long FramesSent, long FramesDropped,
    long Reconnects, TimeSpan Uptime, string? LastError, DestinationLinkStats? Link = null, DestinationLinkTotals? LinkTotals = null);

/// <summary>
/// Pushes one live stream to one destination: subscribes to the stream's hub with its own bounded
/// queue, publishes over RTMP(S), and reconnects with exponential backoff and jitter until the
/// stream ends or the pusher is stopped. Its failures never touch the stream or other destinations.
/// </summary>
public sealed partial class DestinationPusher
{
    private readonly StreamHub _hub;
    private readonly DestinationConfig _destination;
    private readonly RelayOptions _options;
    private readonly X509Certificate2Collection? _extraTrust;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly string _label;
    private long _bytesSent;
    private long _framesSent;
    private long _framesDropped;
    private long _reconnects;
    private long _liveSince;
    private volatile string? _lastError;
    private volatile FrameQueue? _queue;
    private volatile IPublishClient? _client;
    private readonly object _linkGate = new();
    private DestinationLinkTotals? _endedLinks; // SRT: what connections that ended did, added up
    private volatile DestinationState _state = DestinationState.Idle;

    public DestinationPusher(StreamHub hub, DestinationConfig destination, RelayOptions options,
        X509Certificate2Collection? extraTrust, TimeProvider time, ILogger<DestinationPusher> log)
    {
        _hub = hub;
        _destination = destination;
        _options = options;
        _extraTrust = extraTrust;
        _time = time;
        _log = log;
        _label = $"{hub.Name}→{destination.Name}";
    }

    public DestinationConfig Destination => _destination;
    public DestinationState State => _state;

    /// <summary>Raised on every state change (for webhooks, metrics and the UI).</summary>
    public event Action<DestinationPusher, DestinationState>? StateChanged;

    public DestinationStatus GetStatus()
    {
        DestinationLinkStats? link;
        DestinationLinkTotals? totals;
        lock (_linkGate)
        {
            link = _client?.LinkStats;
            totals = link is null ? _endedLinks : (_endedLinks ?? default) + link;
        }

        var since = Interlocked.Read(ref _liveSince);
        return new DestinationStatus(_destination.Id, _destination.Name, _destination.SafeUrl, _state,
            Interlocked.Read(ref _bytesSent) + (_direct?.Bytes ?? 0), Interlocked.Read(ref _framesSent) + (_direct?.Frames ?? 0), Interlocked.Read(ref _framesDropped) + (_queue?.DroppedFrames ?? 0),
            Interlocked.Read(ref _reconnects), _state == DestinationState.Live && since != 0 ? _time.GetElapsedTime(since) : TimeSpan.Zero,
            _lastError, link, totals);
    }

    /// <summary>Delay before attempt <paramref name="attempt"/> (0-based): exponential, capped, with jitter.</summary>
    public static TimeSpan Backoff(int attempt, TimeSpan initial, TimeSpan max, double random)
    {
        var exponential = initial.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 20));
        var capped = Math.Min(exponential, max.TotalMilliseconds);
        // "Equal jitter": half fixed, half random, so retries spread out yet never wait too long.
        return TimeSpan.FromMilliseconds(capped / 2 + capped / 2 * random);
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var isSrt = _destination.Url.Scheme == "srt";
        var target = isSrt ? new PublishTarget(_destination.Url, _destination.Key ?? "") : PublishTarget.From(_destination.Url, _destination.Key);
        var attempt = 0;
        while (!cancellationToken.IsCancellationRequested && !_hub.Ended)
        {
            SetState(DestinationState.Connecting);
            var rejected = false;
            var wasLive = false;
            try
            {
                wasLive = await PushOnceAsync(target, cancellationToken).ConfigureAwait(false);
                if (_hub.Ended || cancellationToken.IsCancellationRequested)
                {
                    break;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (DestinationRejectedException e)
            {
                rejected = true;
                _lastError = e.Message;
                LogRejected(_log, _label, _destination.SafeUrl, e.Message);
            }
            catch (Exception e) when (IsConnectionFailure(e))
            {
                _lastError = e is OperationCanceledException ? "timed out connecting" : e.Message;
                LogFailed(_log, _label, _destination.SafeUrl, _lastError);
            }
            catch (Exception e)
            {
                // A bug in our handling of this destination: logged with its stack, then retried like any
                // failure, so that the destination does not stop for good without a word.
                _lastError = $"internal error: {e.Message}";
                LogInternalError(_log, _label, _destination.SafeUrl, e);
            }

            attempt = wasLive ? 0 : attempt + 1;
            Interlocked.Increment(ref _reconnects);
            SetState(rejected ? DestinationState.Failed : DestinationState.Retrying);
            var delay = rejected
                ? _options.RejectedBackoff
                : Backoff(attempt, _options.InitialBackoff, _options.MaxBackoff, Random.Shared.NextDouble());
            try
            {
                await Task.Delay(delay, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        SetState(DestinationState.Idle);
    }

    /// <summary>
    /// What a destination's connection ends with when the network, the TLS handshake or the destination's
    /// own bytes fail it: reported as a failure and retried with backoff. Anything else is a bug of ours.
    /// </summary>
    internal static bool IsConnectionFailure(Exception e) => e is IOException or SocketException or RtmpProtocolException
        or TimeoutException or AuthenticationException or OperationCanceledException or Media.Amf.AmfException
        or ObjectDisposedException or Ingest.Srt.SrtException;

    /// <summary>One connection: returns whether it got live; throws on failure.</summary>
    private async Task<bool> PushOnceAsync(PublishTarget target, CancellationToken cancellationToken)
    {
        IPublishClient client;
        using (var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            connectTimeout.CancelAfter(_options.ConnectTimeout);
            client = target.ServerUrl.Scheme == "srt"
                ? await SrtPublishClient.ConnectAsync(target.ServerUrl, _destination.Key, _options.ConnectTimeout, connectTimeout.Token).ConfigureAwait(false)
                : await RtmpPublishClient.ConnectAsync(target, _extraTrust, _time, connectTimeout.Token, _options.SocketSendBuffer).ConfigureAwait(false);
        }

        await using (client.ConfigureAwait(false))
        {
            var queue = _hub.Subscribe(_options.QueueFrames, _options.QueueBytes);
            _queue = queue;
            _client = client; // GetStatus reads the link's figures from it while connected
            Interlocked.Exchange(ref _liveSince, _time.GetTimestamp());
            _lastError = null;
            SetState(DestinationState.Live);
            LogLive(_log, _label, _destination.SafeUrl);
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var reader = client.ReadUntilClosedAsync(stop.Token);
            var droppedBefore = 0L;
            try
            {
                var sending = SendAsync(client, queue, stop.Token);
                var first = await Task.WhenAny(sending, reader).ConfigureAwait(false);
                if (first == reader)
                {
                    await stop.CancelAsync().ConfigureAwait(false);
                    await reader.ConfigureAwait(false); // throws why the destination went away
                }

                await sending.ConfigureAwait(false);
                // The stream ended and everything queued was sent: say goodbye properly.
                using var bye = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await client.UnpublishAsync(bye.Token).ConfigureAwait(false);
                return true;
            }
            finally
            {
                droppedBefore = queue.DroppedFrames;
                _queue = null;
                lock (_linkGate)
                {
                    // The connection's last figures join the totals as it leaves: no scrape sees them twice.
                    if (client.LinkStats is { } last)
                    {
                        _endedLinks = (_endedLinks ?? default) + last;
                    }

                    _client = null;
                }
                Interlocked.Add(ref _framesDropped, droppedBefore);
                _hub.Unsubscribe(queue);
                await stop.CancelAsync().ConfigureAwait(false);
                try
                {
                    await reader.ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // Already reported through the send path or irrelevant once we are closing.
                }
            }
        }
    }

    private DirectSend? _direct; // created by the first connection's send loop, kept for its counters

    /// <summary>
    /// Writes the publisher's thread made itself while the send loop waited (see <see cref="DirectSend"/>).
    /// </summary>
    internal long DirectWrites => _direct?.Writes ?? 0;

    /// <summary>Most frames in one write (a backlog of audio alone could otherwise pass the kernel's iovec limit).</summary>
    private const int MaxBatch = 64;

    internal async Task SendAsync(IPublishClient client, FrameQueue queue, CancellationToken cancellationToken)
    {
        var batch = new List<MediaFrame>(8);
        var heldSince = 0L;
        var direct = _direct ??= new DirectSend(this);
        direct.Attach(client, cancellationToken);
        queue.SetLaneWriter(direct);
        try
        {
            while (true)
            {
                // While we wait with nothing held, the publisher's thread writes each read itself (the lane).
                var more = await queue.WaitToReadAsync(lane: batch.Count == 0 && _hub.DeferWakes).ConfigureAwait(false);
                await direct.SettleAsync().ConfigureAwait(false); // a write it began and could not finish, or its failure
                if (!more)
                {
                    break;
                }

                // Everything queued goes out in one write (a read's worth of frames, or a backlog) ...
                while (queue.DequeueInto(batch, MaxBatch) > 0 && batch.Count == MaxBatch)
                {
                    heldSince = 0;
                    await SendBatchAsync(client, batch, cancellationToken).ConfigureAwait(false);
                }

                // ... unless it ends with an audio frame that may wait for the next video frame.
                if (batch.Count > 0 && !Hold(batch[^1], ref heldSince))
                {
                    heldSince = 0;
                    await SendBatchAsync(client, batch, cancellationToken).ConfigureAwait(false);
                }
            }

            if (batch.Count > 0)
            {
                await SendBatchAsync(client, batch, cancellationToken).ConfigureAwait(false); // the stream ended: what was held goes too
            }
        }
        finally
        {
            queue.SetLaneWriter(null);
            direct.Detach(); // the loop runs: no write of the lane is under way (the writer wakes it when done)
            Release(batch); // what was held when the send loop stopped
        }
    }

    /// <summary>
    /// Writes on the publisher's thread while the send loop waits in the lane (<see cref="FrameQueue.LaneWriter"/>):
    /// a read's frames go from the hub to the socket without a queue or the loop. What the socket cannot
    /// take at once, and any failure, go to the loop, which is woken to see to them.
    /// <para>
    /// It runs once per read per destination after the thread has been away ~20 ms, so what it costs
    /// is mostly the objects it touches, each a cache miss: it keeps what a write needs on itself (the
    /// connection, the stream id, a stop flag, its counters) rather than reaching through the client,
    /// the cancellation source and the pusher. One per pusher, attached to each connection in turn, so
    /// its counters only grow.
    /// </para>
    /// </summary>
    private sealed class DirectSend(DestinationPusher pusher) : FrameQueue.LaneWriter
    {
        private readonly List<MediaFrame> _batch = new(8);
        private IPublishClient? _client;
        private RtmpConnection? _connection; // plain TCP RTMP: one gathering write of the shared chunked bytes
        private uint _streamId;
        private CancellationToken _cancellationToken;
        private CancellationTokenRegistration _stopping;
        private volatile bool _stopped;
        private ValueTask _pending;
        private ExceptionDispatchInfo? _failure;

        // Written only by the thread that took the waiting loop's wake-up, one at a time: plain adds.
        private long _frames;
        private long _bytes;
        private long _writes;

        public long Frames => Volatile.Read(ref _frames);
        public long Bytes => Volatile.Read(ref _bytes);
        public long Writes => Volatile.Read(ref _writes);

        public void Attach(IPublishClient client, CancellationToken cancellationToken)
        {
            _client = client;
            if (client is RtmpPublishClient rtmp)
            {
                _connection = rtmp.Connection;
                _streamId = rtmp.StreamId;
            }

            _cancellationToken = cancellationToken;
            _stopped = false;
            _stopping = cancellationToken.UnsafeRegister(static state => ((DirectSend)state!)._stopped = true, this);
        }

        public void Detach()
        {
            _stopping.Dispose();
            _client = null;
            _connection = null;
        }

        public override bool TryWrite(ReadOnlySpan<MediaFrame> frames, out int taken)
        {
            taken = 0;
            try
            {
                AssertMediaOnly(frames);
                if (_stopped || _client is not { } client)
                {
                    throw new OperationCanceledException("the destination is stopping");
                }

                while (taken < frames.Length)
                {
                    var part = frames.Slice(taken, Math.Min(MaxBatch, frames.Length - taken));
                    taken += part.Length;
                    if (_connection is { } connection
                        && connection.TrySendFramesNow(part, _streamId, _cancellationToken, out var bytes, out var send))
                    {
                        // Plain TCP: one gathering write of the frames' shared chunked bytes, no queue, no copy.
                        // Counted once the connection has them (what the socket did not take waits in its pipe).
                        _frames += part.Length;
                        _bytes += bytes;
                        _writes++;
                        if (!send.IsCompletedSuccessfully)
                        {
                            _pending = send;
                            return false;
                        }

                        send.GetAwaiter().GetResult();
                        continue;
                    }

                    // Anything else (SRT, TLS, a data message, the write lock held for a moment): the client's own batch send.
                    foreach (var frame in part)
                    {
                        _batch.Add(frame.AddRef());
                    }

                    _writes++;
                    var batchSend = pusher.SendBatchAsync(client, _batch, _cancellationToken);
                    if (!batchSend.IsCompletedSuccessfully)
                    {
                        _pending = batchSend; // releases the batch when it ends
                        return false;
                    }

                    batchSend.GetAwaiter().GetResult();
                }

                return true;
            }
            catch (Exception e)
            {
                // Never the publisher's problem: the send loop rethrows it and the destination reconnects.
                // (SendBatchAsync has released its batch; what was not written is dropped with the connection.)
                _failure = ExceptionDispatchInfo.Capture(e);
                taken = frames.Length;
                return false;
            }
        }

        /// <summary>
        /// The lane carries audio and video only: the hub queues data messages, which go alone through
        /// the client with their own <c>@setDataFrame</c> (see <see cref="StreamHub"/>). Checked in debug builds.
        /// </summary>
        [System.Diagnostics.Conditional("DEBUG")]
        private static void AssertMediaOnly(ReadOnlySpan<MediaFrame> frames)
        {
            foreach (var frame in frames)
            {
                System.Diagnostics.Debug.Assert(frame.Kind != MediaKind.Data, "a data message in the lane");
            }
        }

        /// <summary>On the send loop, once woken: finishes a write begun here, or throws why it failed.</summary>
        public async ValueTask SettleAsync()
        {
            if (_failure is { } failure)
            {
                _failure = null;
                failure.Throw();
            }

            var pending = _pending;
            _pending = default;
            await pending.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Merged writes: what is queued goes out in one write, and an audio frame of a stream with video
    /// waits (at most <see cref="RelayOptions.AudioMergeWindow"/>) for the next video frame, and both
    /// go out together: one packet and one wake-up of the receiver instead of two or three. Video is
    /// never held. A hub that wakes us once per read (<see cref="StreamHub.DeferWakes"/>) has already
    /// paired the frames; nothing is held then.
    /// </summary>
    private bool Hold(MediaFrame frame, ref long heldSince)
    {
        if (frame.Kind != MediaKind.Audio || frame.IsSequenceHeader || _options.AudioMergeWindow <= TimeSpan.Zero || !_hub.HasVideo
            || _hub.DeferWakes)
        {
            return false;
        }

        var now = _time.GetTimestamp();
        if (heldSince == 0)
        {
            heldSince = now;
            return true;
        }

        return _time.GetElapsedTime(heldSince, now) < _options.AudioMergeWindow;
    }

    /// <summary>
    /// Sends a batch and releases its frames. When the socket takes it at once (the usual case) this
    /// completes in place, without an async state machine: the publisher's thread is running it.
    /// </summary>
    private ValueTask SendBatchAsync(IPublishClient client, List<MediaFrame> batch, CancellationToken cancellationToken)
    {
        long before;
        ValueTask send;
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            before = client.BytesSent;
            send = client.SendFramesAsync(batch, cancellationToken);
        }
        catch
        {
            Release(batch);
            throw;
        }

        if (!send.IsCompletedSuccessfully)
        {
            return AwaitBatchAsync(send, client, batch, before);
        }

        send.GetAwaiter().GetResult(); // a completed ValueTask must still be consumed
        Sent(client, batch, before);
        return ValueTask.CompletedTask;
    }

    private async ValueTask AwaitBatchAsync(ValueTask send, IPublishClient client, List<MediaFrame> batch, long before)
    {
        try
        {
            await send.ConfigureAwait(false);
        }
        catch
        {
            Release(batch);
            throw;
        }

        Sent(client, batch, before);
    }

    private void Sent(IPublishClient client, List<MediaFrame> batch, long before)
    {
        Interlocked.Add(ref _bytesSent, client.BytesSent - before);
        Interlocked.Add(ref _framesSent, batch.Count);
        Release(batch);
    }

    private static void Release(List<MediaFrame> batch)
    {
        for (var i = 0; i < batch.Count; i++)
        {
            batch[i].Release();
        }

        batch.Clear();
    }

    private void SetState(DestinationState state)
    {
        if (_state == state)
        {
            return;
        }

        _state = state;
        StateChanged?.Invoke(this, state);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "[destination {Destination}] live on {Url}")]
    private static partial void LogLive(ILogger logger, string destination, string url);

    [LoggerMessage(Level = LogLevel.Warning, Message = "[destination {Destination}] {Url} failed: {Error}; retrying")]
    private static partial void LogFailed(ILogger logger, string destination, string url, string error);

    [LoggerMessage(Level = LogLevel.Error, Message = "[destination {Destination}] {Url}: internal error (a bug: please report it with this log); retrying")]
    private static partial void LogInternalError(ILogger logger, string destination, string url, Exception error);

    [LoggerMessage(Level = LogLevel.Error, Message = "[destination {Destination}] {Url} refused the stream: {Error} (check the destination's key and URL)")]
    private static partial void LogRejected(ILogger logger, string destination, string url, string error);
}
