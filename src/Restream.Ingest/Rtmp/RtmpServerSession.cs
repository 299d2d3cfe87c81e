using System.Buffers;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Restream.Ingest.Hub;
using Restream.Media;
using Restream.Media.Amf;
using Restream.Media.Flv;
using Restream.Media.Rtmp;

namespace Restream.Ingest.Rtmp;

/// <summary>Where a server session stands; each state accepts only what makes sense in it.</summary>
public enum SessionState
{
    Handshake,
    AwaitingConnect,
    Connected,
    Publishing,
    Playing,
    Closed,
}

/// <summary>
/// The server side of one RTMP connection: handshake, connect, then publish into a stream hub or
/// play from one. Anything malformed or out of order closes this connection alone.
/// </summary>
public sealed partial class RtmpServerSession
{
    private const uint MediaStreamId = 1;
    private static readonly byte[] SetDataFrameName = "@setDataFrame"u8.ToArray();

    private readonly Socket _socket;
    private readonly Func<Socket, CancellationToken, Task<Stream>>? _wrap;
    private readonly RtmpIngestOptions _options;
    private readonly IChannelCatalog _catalog;
    private readonly IPublishAuthorizer _authorizer;
    private readonly StreamRegistry _registry;
    private readonly IngestCounters _counters;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly string _remote;
    private RtmpConnection? _connection;
    private StreamHub? _hub;
    private FrameQueue? _playQueue;
    private Task? _playLoop;
    private string _streamLabel = "-";
    private bool _isPublisher;
    private bool _secure;
    private CancellationTokenSource? _cts;
    private CancellationTokenRegistration _kick;
    private MergedRead? _mergedRead;
    private volatile bool _readsPromptly; // the publisher is read as its bytes arrive (it waits for our acknowledgements, or the planner cannot predict it); logged once a switch
    private int _promptReadsEnded; // the reader's count of switches back to merged reads, as the watchdog last saw it
    private ArrivalPlanner? _planner;
    private MediaKind _lastKind; // of the last media frame published
    private bool _paced;

    public RtmpServerSession(Socket socket, RtmpIngestOptions options, IChannelCatalog catalog, IPublishAuthorizer authorizer,
        StreamRegistry registry, IngestCounters counters, TimeProvider time, ILogger<RtmpServerSession> log,
        Func<Socket, CancellationToken, Task<Stream>>? wrap = null)
    {
        _wrap = wrap;
        _authorizer = authorizer;
        _socket = socket;
        _options = options;
        _catalog = catalog;
        _registry = registry;
        _counters = counters;
        _time = time;
        _log = log;
        var endpoint = socket.RemoteEndPoint as System.Net.IPEndPoint;
        _remote = endpoint is null ? "?" : $"{(endpoint.Address.IsIPv4MappedToIPv6 ? endpoint.Address.MapToIPv4() : endpoint.Address)}:{endpoint.Port}";
    }

    public SessionState State { get; private set; } = SessionState.Handshake;

    public async Task RunAsync(CancellationToken stoppingToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        _cts = cts;
        Stream stream;
        try
        {
            // RTMPS: the TLS handshake comes first, bounded by the publish timeout like the rest.
            using var handshake = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
            handshake.CancelAfter(_options.PublishTimeout);
            stream = _wrap is null ? new NetworkStream(_socket, ownsSocket: true) : await _wrap(_socket, handshake.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Security.Authentication.AuthenticationException or OperationCanceledException or SocketException)
        {
            _counters.OnProtocolError();
            LogTlsFailed(_log, _remote, e is OperationCanceledException ? "TLS handshake timed out" : e.Message);
            _socket.Dispose();
            return;
        }

        _secure = _wrap is not null;
        await using var connection = new RtmpConnection(stream, _remote, _time, receiveThread: _wrap is null && _options.ReceiveThreads);
        _connection = connection;
        var watchdog = WatchAsync(connection, cts);
        try
        {
            await connection.AcceptHandshakeAsync(cts.Token).ConfigureAwait(false);
            State = SessionState.AwaitingConnect;
            while (true)
            {
                var (ok, message) = await connection.ReadMessageAsync(cts.Token).ConfigureAwait(false);
                if (!ok)
                {
                    break;
                }

                if (message.TypeId is RtmpMessageType.Audio or RtmpMessageType.Video)
                {
                    // Media is handled in place: the body buffer moves into the hub without a copy.
                    WakeProfile.Enter(WakeProfile.Phase.Hub);
                    PublishMedia(ref message);
                    message.Dispose();
                    WakeProfile.Enter(WakeProfile.Phase.Ours);
                    continue;
                }

                bool keepGoing;
                try
                {
                    keepGoing = await HandleAsync(connection, message, cts.Token).ConfigureAwait(false);
                }
                finally
                {
                    message.Dispose();
                }

                if (!keepGoing)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested && _closeReason is not null)
        {
            LogClosed(_log, _streamLabel, _remote, _closeReason);
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e) when (e is RtmpProtocolException or AmfException or FormatException)
        {
            _counters.OnProtocolError();
            LogProtocolError(_log, _streamLabel, _remote, e.Message);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            LogConnectionLost(_log, _streamLabel, _remote, e.Message);
        }
        catch (Exception e)
        {
            // A bug in one connection's handling ends that connection, logged, and nothing else.
            _counters.OnInternalError();
            LogInternalError(_log, _streamLabel, _remote, e);
        }
        finally
        {
            State = SessionState.Closed;
            await cts.CancelAsync().ConfigureAwait(false);
            await EndAsync().ConfigureAwait(false);
            try
            {
                await watchdog.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private string? _closeReason;

    /// <summary>
    /// Enforces the publish timeout and the idle timeout, pings the peer now and then, and makes the
    /// publishing checks (<see cref="PublishingChecks"/>) unless a paced publisher's receive thread makes them.
    /// </summary>
    private async Task WatchAsync(RtmpConnection connection, CancellationTokenSource cts)
    {
        var started = _time.GetTimestamp();
        var lastPing = started;
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(_options.PublishTimeout.TotalMilliseconds / 4, 100, 1000));
        _checkEvery = tick;
        var publishingTick = PublishingTick(tick);
        using var timer = new PeriodicTimer(tick, _time);
        while (await timer.WaitForNextTickAsync(cts.Token).ConfigureAwait(false))
        {
            _counters.OnWatchdogTick();

            // A publisher read on its own thread has its checks made there, between reads (see
            // CheckFromReader): this timer only backs that up, and wakes less often meanwhile.
            var period = State == SessionState.Publishing && _paced ? publishingTick : tick;
            if (timer.Period != period)
            {
                timer.Period = period;
            }

            if (State is SessionState.Handshake or SessionState.AwaitingConnect or SessionState.Connected
                && _time.GetElapsedTime(started) > _options.PublishTimeout)
            {
                _closeReason = $"no publish or play within {_options.PublishTimeout.TotalSeconds:0.#} s (Restream:Rtmp:PublishTimeout)";
                await cts.CancelAsync().ConfigureAwait(false);
                return;
            }

            if (!_paced || _time.GetElapsedTime(Volatile.Read(ref _lastChecks)) >= 2 * tick)
            {
                PublishingChecks(connection);
            }

            if (State == SessionState.Publishing && _time.GetElapsedTime(connection.LastReceived) > _options.IdleTimeout)
            {
                _closeReason = $"publisher sent nothing for {_options.IdleTimeout.TotalSeconds:0.#} s (Restream:Rtmp:IdleTimeout)";
                await cts.CancelAsync().ConfigureAwait(false);
                return;
            }

            if (State is SessionState.Publishing or SessionState.Playing && _time.GetElapsedTime(lastPing) > _options.PingInterval)
            {
                lastPing = _time.GetTimestamp();
                try
                {
                    await connection.SendPingAsync(cts.Token).ConfigureAwait(false);
                }
                catch (IOException)
                {
                    return;
                }
            }
        }
    }

    private TimeSpan _checkEvery = TimeSpan.FromSeconds(1);
    private long _lastChecks; // when PublishingChecks last ran (TimeProvider ticks)
    private int _checking; // 1 while PublishingChecks runs, on the receive thread or the watchdog's
    private double _nextReaderCheck; // ArrivalPlanner time of the receive thread's next checks

    /// <summary>
    /// How often the watchdog wakes while a paced publisher (read on its own thread) publishes: its
    /// once-a-second checks are made between reads then (<see cref="CheckFromReader"/>), so the timer
    /// only enforces the idle timeout and sends pings, and catches up the checks when no read came for
    /// two ticks. Every wake of the timer costs the timer thread and a thread-pool worker a wake-up,
    /// and keeps the pool's gate thread awake.
    /// </summary>
    private TimeSpan PublishingTick(TimeSpan tick) =>
        TimeSpan.FromMilliseconds(Math.Max(tick.TotalMilliseconds,
            Math.Min(5000, Math.Min(_options.IdleTimeout.TotalMilliseconds / 4, _options.PingInterval.TotalMilliseconds / 2))));

    /// <summary>
    /// On the receive thread, before it waits (from the read pacers): the watchdog's publishing checks,
    /// about once per watchdog tick, where the thread is awake anyway.
    /// </summary>
    private void CheckFromReader(double now)
    {
        if (now < _nextReaderCheck)
        {
            return;
        }

        _nextReaderCheck = now + _checkEvery.TotalMilliseconds;
        if (_connection is { } connection)
        {
            PublishingChecks(connection);
        }
    }

    /// <summary>
    /// The publisher's read mode: a switch to prompt reads and back is counted and logged, and the
    /// merged-read mark follows the stream's byte rate. Run by the watchdog's tick, or by the receive
    /// thread between reads for a paced publisher; never by both at once.
    /// </summary>
    private void PublishingChecks(RtmpConnection connection)
    {
        if (Interlocked.Exchange(ref _checking, 1) != 0)
        {
            return;
        }

        try
        {
            Volatile.Write(ref _lastChecks, _time.GetTimestamp());
            if (connection.PromptReadsEnded != _promptReadsEnded)
            {
                // Its stalls were a lossy moment, not a publisher that waits for us: merged reads again.
                _promptReadsEnded = connection.PromptReadsEnded;
                if (!_readsPromptly)
                {
                    // Switched and back between two ticks (a publisher of many small messages): still one to count.
                    _counters.OnPromptReads();
                    LogPromptReads(_log, _streamLabel, _remote);
                }

                _readsPromptly = false;
                LogMergedReadsAgain(_log, _streamLabel, _remote);
            }

            if (State == SessionState.Publishing && connection.PromptReads && !_readsPromptly)
            {
                // The reader sets the socket's mark from now on; MergedRead must not change it under it.
                _readsPromptly = true;
                _counters.OnPromptReads();
                LogPromptReads(_log, _streamLabel, _remote);
            }

            if (State == SessionState.Publishing && _hub is { } hub && !_readsPromptly)
            {
                _mergedRead ??= new MergedRead(_socket, _options.MergedRead);
                _mergedRead.Tune(connection.BytesReceived, _time.GetTimestamp(), _time.GetElapsedTime(connection.LastReceived), hub.HasVideo, _time);
                connection.ReadWaitLimit = _mergedRead.WaitLimit;
            }
            else if (_mergedRead is { } merged)
            {
                merged.Reset();
                connection.ReadWaitLimit = Timeout.InfiniteTimeSpan;
                _mergedRead = null;
            }
        }
        finally
        {
            Volatile.Write(ref _checking, 0);
        }
    }

    private async ValueTask<bool> HandleAsync(RtmpConnection connection, RtmpMessage message, CancellationToken cancellationToken)
    {
        switch (message.TypeId)
        {
            case RtmpMessageType.CommandAmf0:
                return await HandleCommandAsync(connection, RtmpCommand.Parse(message.Payload), message.StreamId, cancellationToken).ConfigureAwait(false);
            case RtmpMessageType.CommandAmf3:
                // AMF3 command messages start with a format byte, then AMF0 (as FFmpeg and Flash send them).
                return message.Length > 0 && await HandleCommandAsync(connection, RtmpCommand.Parse(message.Payload[1..]), message.StreamId, cancellationToken).ConfigureAwait(false);
            case RtmpMessageType.DataAmf0:
                if (State == SessionState.Publishing && _hub is not null)
                {
                    HandleData(message);
                }

                return true;
            case RtmpMessageType.Aggregate:
                if (State != SessionState.Publishing || _hub is null)
                {
                    throw new RtmpProtocolException("media before publish");
                }

                PublishAggregate(message);
                return true;
            case RtmpMessageType.UserControl:
                return true; // set buffer length from players: nothing to do
            default:
                return true; // shared objects and the like: not used by encoders; ignored
        }
    }

    private void PublishMedia(ref RtmpMessage message)
    {
        if (State != SessionState.Publishing || _hub is null)
        {
            throw new RtmpProtocolException("media before publish");
        }

        if (message.Length == 0)
        {
            return; // empty media messages carry nothing; FFmpeg sends them at times
        }

        var kind = (MediaKind)message.TypeId;
        var timestamp = message.Timestamp;
        var length = message.Length;
        var frame = MediaFrame.Create(kind, timestamp, message.DetachBuffer(), length);
        _lastKind = kind;
        if (_planner is { } planner && !frame.IsSequenceHeader)
        {
            planner.OnFrame(kind == MediaKind.Audio, timestamp, ArrivalPlanner.Now, length);
        }

        _hub.Publish(frame);
    }

    /// <summary>
    /// Sends what a read brought when the planner says so, and bounds the next wait. A publisher read
    /// as its bytes arrive (<see cref="RtmpConnection.PromptReads"/>) gives the planner nothing to
    /// leave in the kernel: its audio waits for the next read within the budget, and video goes at once.
    /// </summary>
    private sealed class PlannedReads(ArrivalPlanner planner, StreamHub hub, RtmpServerSession session) : IReadPacer
    {
        /// <summary>Timers that found nothing, per <see cref="UnpredictableWindow"/> ms, that show a publisher the planner cannot predict.</summary>
        private const int UnpredictableWakeUps = 20;
        private const double UnpredictableWindow = 2000;

        private readonly FlushEachRead _prompt = new(hub, session, session._options.LatencyBudget);
        private double _windowStart = double.NaN;
        private int _lastEmpty;
        private int _wasted; // this window's timers that found nothing while the stream flowed
        private bool _lastPaused;

        public int Mark => session._mergedRead?.Mark ?? 1;

        public int AudioMark => planner.AudioMark;

        public double BeforeWait(double now, out WaitMark mark)
        {
            if (session._connection is not { } connection || connection.PromptReads || Unpredictable(connection, now))
            {
                return _prompt.BeforeWait(now, out mark); // which makes the checks
            }

            session.CheckFromReader(now);

            WakeProfile.Enter(WakeProfile.Phase.Plan);
            var (send, wakeBy, planned) = planner.Plan(now);
            if (send)
            {
                WakeProfile.Enter(WakeProfile.Phase.Dispatch);
                hub.FlushWakes();
            }

            WakeProfile.Enter(WakeProfile.Phase.Ours);

            _lastPaused = planner.PublisherPaused;
            mark = planned;
            return wakeBy;
        }

        /// <summary>
        /// The planner's timers keep waking the thread for frames that have not come (a publisher whose
        /// muxer sends in bursts of its own, FFmpeg with <c>-tcp_nodelay 1</c>): such a publisher is read
        /// as its bytes arrive from now on, as one that waits for our acknowledgements is.
        /// </summary>
        private bool Unpredictable(RtmpConnection connection, double now)
        {
            // The wait before this one ended by its time with nothing to read; a paused publisher's
            // look-now-and-then waits do not count (a stalled network is not a publisher in bursts).
            var empty = connection.EmptyTimeouts;
            if (empty != _lastEmpty)
            {
                _wasted += _lastPaused ? 0 : empty - _lastEmpty;
                _lastEmpty = empty;
            }

            if (double.IsNaN(_windowStart) || now - _windowStart >= UnpredictableWindow)
            {
                (_windowStart, _wasted) = (now, 0);
            }

            if (_wasted < UnpredictableWakeUps)
            {
                return false;
            }

            session._readsPromptly = true; // before the switch: the watchdog must not take it for one that waits for acknowledgements
            session._counters.OnPromptReads();
            LogUnpredictable(session._log, session._streamLabel, session._remote, _wasted);
            connection.ReadPromptly();
            return true;
        }
    }

    /// <summary>
    /// Without a latency budget: what one read brought goes out at once, before the next wait. Audio
    /// waits for the video frame after it in the kernel, below the merged-read mark, so a read
    /// brings both. From a publisher read as its bytes arrive (<see cref="RtmpConnection.PromptReads"/>)
    /// a read brings audio alone: it waits here instead, for the next read, at most
    /// <paramref name="audioWait"/> (as long as it would have in the kernel, <see cref="MergedRead.WaitLimit"/>,
    /// or the latency budget).
    /// </summary>
    private sealed class FlushEachRead(StreamHub hub, RtmpServerSession session, TimeSpan audioWait) : IReadPacer
    {
        private readonly double _audioWait = audioWait.TotalMilliseconds;
        private double _audioSince = double.PositiveInfinity;

        public int Mark => session._mergedRead?.Mark ?? 1;

        public int AudioMark => 1;

        public double BeforeWait(double now, out WaitMark mark)
        {
            session.CheckFromReader(now);
            mark = WaitMark.Merged;
            if (session._lastKind == MediaKind.Audio && hub.HasVideo && session._connection is { PromptReads: true })
            {
                _audioSince = Math.Min(_audioSince, now);
                var until = _audioSince + _audioWait;
                if (now < until)
                {
                    return until;
                }
            }

            _audioSince = double.PositiveInfinity;
            hub.FlushWakes();
            return double.PositiveInfinity;
        }
    }

    private void HandleData(RtmpMessage message)
    {
        var reader = new AmfReader(message.Payload);
        var name = reader.ReadValue() as string;
        if (name == "@setDataFrame")
        {
            name = reader.ReadValue() as string;
        }

        if (name != "onMetaData" || reader.End)
        {
            return;
        }

        if (reader.ReadValue() is AmfObject metadata)
        {
            _hub!.SetMetadata(StreamHub.CreateMetadataFrame(message.Timestamp, metadata), metadata);
        }
    }

    /// <summary>Splits an aggregate message (RTMP 7.1.6) into the FLV tags it carries.</summary>
    private void PublishAggregate(RtmpMessage message)
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(message.Payload));
        long offset = -1;
        while (FlvReader.TryReadTag(ref reader, out var header, out var body))
        {
            if (offset < 0)
            {
                offset = (long)message.Timestamp - header.Timestamp;
            }

            if (header.Type is FlvTagType.Audio or FlvTagType.Video && body.Length > 0)
            {
                var buffer = MediaBuffers.Pool.Rent((int)body.Length);
                body.CopyTo(buffer);
                _hub!.Publish(MediaFrame.Create((MediaKind)header.Type, (uint)(header.Timestamp + offset), buffer, (int)body.Length));
            }
        }
    }

    private async ValueTask<bool> HandleCommandAsync(RtmpConnection connection, RtmpCommand command, uint streamId, CancellationToken cancellationToken)
    {
        switch (command.Name)
        {
            case "connect":
                return await ConnectAsync(connection, command, cancellationToken).ConfigureAwait(false);
            case "releaseStream" or "FCPublish" or "FCUnpublish" or "getStreamLength" or "_checkbw":
                RequireConnected(command.Name);
                if (command.Name == "FCUnpublish" && State == SessionState.Publishing)
                {
                    await EndAsync().ConfigureAwait(false);
                }

                return true;
            case "createStream":
                RequireConnected(command.Name);
                await connection.SendCommandAsync(new RtmpCommand("_result", command.TransactionId, null, [(double)MediaStreamId]), 0, cancellationToken).ConfigureAwait(false);
                return true;
            case "publish":
                RequireConnected(command.Name);
                return await PublishAsync(connection, command, cancellationToken).ConfigureAwait(false);
            case "play":
                RequireConnected(command.Name);
                return await PlayAsync(connection, command, cancellationToken).ConfigureAwait(false);
            case "deleteStream" or "closeStream":
                var wasLive = State is SessionState.Publishing or SessionState.Playing;
                await EndAsync().ConfigureAwait(false);
                return !wasLive || command.Name == "closeStream";
            default:
                // Unknown commands (e.g. "onBWDone" checks) are ignored, as nginx-rtmp does.
                return true;
        }
    }

    private void RequireConnected(string command)
    {
        if (State is SessionState.Handshake or SessionState.AwaitingConnect)
        {
            throw new RtmpProtocolException($"\"{command}\" before connect");
        }
    }

    private async ValueTask<bool> ConnectAsync(RtmpConnection connection, RtmpCommand command, CancellationToken cancellationToken)
    {
        if (State != SessionState.AwaitingConnect)
        {
            throw new RtmpProtocolException("second connect on one connection");
        }

        var app = (command.CommandObject as AmfObject)?.GetString("app") ?? string.Empty;
        var appName = app.Split('?', 2)[0].TrimEnd('/');
        if (!string.Equals(appName, _options.App, StringComparison.Ordinal))
        {
            LogUnknownApp(_log, _remote, appName, _options.App);
            await connection.SendCommandAsync(new RtmpCommand("_error", command.TransactionId, null,
                [new AmfObject { { "level", "error" }, { "code", RtmpStatus.ConnectRejected }, { "description", $"unknown application \"{appName}\"" } }]), 0, cancellationToken).ConfigureAwait(false);
            return false;
        }

        await connection.WriteAsync(o =>
        {
            ProtocolControl.WriteWindowAcknowledgementSize(o, 2_500_000);
            ProtocolControl.WriteSetPeerBandwidth(o, 2_500_000, 2);
        }, cancellationToken).ConfigureAwait(false);
        await connection.SetOutChunkSizeAsync(_options.ChunkSize, cancellationToken).ConfigureAwait(false);
        var encoding = (command.CommandObject as AmfObject)?.GetNumber("objectEncoding") ?? 0;
        await connection.SendCommandAsync(new RtmpCommand("_result", command.TransactionId,
            new AmfObject { { "fmsVer", "FMS/3,5,7,7009" }, { "capabilities", 31.0 }, { "mode", 1.0 } },
            [new AmfObject { { "level", "status" }, { "code", RtmpStatus.ConnectSuccess }, { "description", "Connection succeeded." }, { "objectEncoding", encoding } }]),
            0, cancellationToken).ConfigureAwait(false);
        State = SessionState.Connected;
        return true;
    }

    private async ValueTask<bool> PublishAsync(RtmpConnection connection, RtmpCommand command, CancellationToken cancellationToken)
    {
        if (State != SessionState.Connected)
        {
            throw new RtmpProtocolException("publish on a connection that already publishes or plays");
        }

        var key = (command.StringArgument(0) ?? string.Empty).Split('?', 2)[0];
        var channel = key.Length == 0 ? null : await _catalog.FindByStreamKeyAsync(key, cancellationToken).ConfigureAwait(false);
        if (channel is null)
        {
            _counters.OnRejectedKey();
            LogBadKey(_log, _remote);
            await SendStatusAsync(connection, "error", RtmpStatus.PublishBadName, "Unknown stream key.", cancellationToken).ConfigureAwait(false);
            return false;
        }

        _streamLabel = $"{_options.App}/{channel.Name}";
        if (await _authorizer.AuthorizeAsync(channel, _remote, cancellationToken).ConfigureAwait(false) is { } denied)
        {
            LogDenied(_log, _streamLabel, _remote, denied);
            await SendStatusAsync(connection, "error", RtmpStatus.PublishBadName, $"Publish denied: {denied}", cancellationToken).ConfigureAwait(false);
            return false;
        }

        if (!_registry.TryStart(channel, _remote, _time, out var hub))
        {
            LogAlreadyLive(_log, _streamLabel, _remote, hub.PublisherRemote);
            await SendStatusAsync(connection, "error", RtmpStatus.PublishBadName, "This channel is already live.", cancellationToken).ConfigureAwait(false);
            return false;
        }

        _hub = hub;
        _isPublisher = true;
        _kick = hub.StopRequested.Register(() =>
        {
            _closeReason = "kicked by an operator";
            _cts?.Cancel();
        });
        State = SessionState.Publishing;
        if (_options.LatencyBudget > TimeSpan.Zero && _options.MergedRead > TimeSpan.Zero)
        {
            var planner = new ArrivalPlanner(_options.LatencyBudget);
            if (connection.SetReadPacer(new PlannedReads(planner, hub, this)))
            {
                hub.DeferWakes = true;
                _planner = planner;
                _paced = true;
            }
        }
        else if (_options.MergedRead > TimeSpan.Zero && connection.SetReadPacer(new FlushEachRead(hub, this, 4 * _options.MergedRead)))
        {
            // Merged reads already pair audio with the video frame that woke us: each destination is
            // woken once per read and sends what it brought in one write.
            hub.DeferWakes = true;
            _paced = true;
        }

        await connection.WriteAsync(o => ProtocolControl.WriteUserControl(o, UserControlEvent.StreamBegin, MediaStreamId), cancellationToken).ConfigureAwait(false);
        await SendStatusAsync(connection, "status", RtmpStatus.PublishStart, $"{channel.Name} is now published.", cancellationToken).ConfigureAwait(false);
        LogPublishStarted(_log, _streamLabel, _remote);
        return true;
    }

    private async ValueTask<bool> PlayAsync(RtmpConnection connection, RtmpCommand command, CancellationToken cancellationToken)
    {
        if (State != SessionState.Connected)
        {
            throw new RtmpProtocolException("play on a connection that already publishes or plays");
        }

        var name = (command.StringArgument(0) ?? string.Empty).Split('?', 2)[0];
        var channel = !_options.AllowPlay || name.Length == 0 ? null
            : await _catalog.FindByNameAsync(name, cancellationToken).ConfigureAwait(false)
              ?? await _catalog.FindByStreamKeyAsync(name, cancellationToken).ConfigureAwait(false);
        var hub = channel is null ? null : _registry.Find(channel.Name);
        if (hub is null)
        {
            LogPlayNotFound(_log, _remote);
            await SendStatusAsync(connection, "error", RtmpStatus.PlayStreamNotFound, "No such live stream.", cancellationToken).ConfigureAwait(false);
            return false;
        }

        _streamLabel = $"{_options.App}/{channel!.Name}";
        _hub = hub;
        State = SessionState.Playing;
        await connection.WriteAsync(o =>
        {
            ProtocolControl.WriteUserControl(o, UserControlEvent.StreamIsRecorded, MediaStreamId);
            ProtocolControl.WriteUserControl(o, UserControlEvent.StreamBegin, MediaStreamId);
        }, cancellationToken).ConfigureAwait(false);
        await SendStatusAsync(connection, "status", RtmpStatus.PlayReset, "Playing and resetting.", cancellationToken).ConfigureAwait(false);
        await SendStatusAsync(connection, "status", RtmpStatus.PlayStart, $"Started playing {channel.Name}.", cancellationToken).ConfigureAwait(false);
        var access = new ArrayBufferWriter<byte>(64);
        AmfWriter.WriteString(access, "|RtmpSampleAccess");
        AmfWriter.WriteBoolean(access, true);
        AmfWriter.WriteBoolean(access, true);
        await connection.SendMessageAsync(RtmpChunkStreams.Data, RtmpMessageType.DataAmf0, 0, MediaStreamId, access.WrittenMemory, cancellationToken).ConfigureAwait(false);

        _playQueue = hub.Subscribe();
        _playLoop = SendPlayAsync(connection, _playQueue, cancellationToken);
        LogPlayStarted(_log, _streamLabel, _remote);
        return true;
    }

    private async Task SendPlayAsync(RtmpConnection connection, FrameQueue queue, CancellationToken cancellationToken)
    {
        try
        {
            while (await queue.WaitToReadAsync().ConfigureAwait(false))
            {
                while (queue.TryDequeue(out var frame))
                {
                    try
                    {
                        await connection.SendFrameAsync(frame, MediaStreamId, cancellationToken).ConfigureAwait(false);
                    }
                    finally
                    {
                        frame.Release();
                    }
                }
            }

            await SendStatusAsync(connection, "status", RtmpStatus.PlayUnpublishNotify, "The stream ended.", cancellationToken).ConfigureAwait(false);
            await connection.WriteAsync(o => ProtocolControl.WriteUserControl(o, UserControlEvent.StreamEof, MediaStreamId), cancellationToken).ConfigureAwait(false);
            // The player closes when it has read everything; if it does not, the socket goes with the session.
            if (!_secure)
            {
                _socket.Shutdown(SocketShutdown.Send);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SocketException or InvalidOperationException)
        {
            // The player went away; the read loop ends the session.
        }
    }

    private static ValueTask SendStatusAsync(RtmpConnection connection, string level, string code, string description, CancellationToken cancellationToken) =>
        connection.SendCommandAsync(RtmpCommand.OnStatus(level, code, description), MediaStreamId, cancellationToken);

    private async ValueTask EndAsync()
    {
        var hub = _hub;
        _hub = null;
        if (hub is null)
        {
            return;
        }

        if (_isPublisher)
        {
            _isPublisher = false;
            if (_paced)
            {
                _paced = false;
                _planner = null;
                _connection?.SetReadPacer(null);
            }

            _mergedRead?.Reset();
            _mergedRead = null;
            await _kick.DisposeAsync().ConfigureAwait(false);
            _registry.Stop(hub);
            LogPublishEnded(_log, _streamLabel, _remote, hub.FramesIn, hub.BytesIn);
        }

        if (_playQueue is { } queue)
        {
            _playQueue = null;
            hub.Unsubscribe(queue);
            if (_playLoop is { } loop)
            {
                await loop.ConfigureAwait(false);
            }

            LogPlayEnded(_log, _streamLabel, _remote);
        }

        if (State != SessionState.Closed)
        {
            State = SessionState.Connected;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "RTMPS connection from {Remote} closed: {Error}")]
    private static partial void LogTlsFailed(ILogger logger, string remote, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] publisher {Remote} holds back its data until we acknowledge what it sent (Nagle's algorithm; FFmpeg's RTMP client does this unless given -tcp_nodelay 1): reading it as it arrives, since merged reads would delay its frames")]
    private static partial void LogPromptReads(ILogger logger, string stream, string remote);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] publisher {Remote} sends whole messages after all (its stalls were a lossy moment): merged reads again")]
    private static partial void LogMergedReadsAgain(ILogger logger, string stream, string remote);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] publisher {Remote} sends in bursts the latency budget's planner cannot predict ({Count} of its timers found nothing within 2 s): reading it as it arrives")]
    private static partial void LogUnpredictable(ILogger logger, string stream, string remote, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] publisher {Remote} started")]
    private static partial void LogPublishStarted(ILogger logger, string stream, string remote);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] publisher {Remote} stopped after {Frames} frames, {Bytes} bytes")]
    private static partial void LogPublishEnded(ILogger logger, string stream, string remote, long frames, long bytes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "publish refused from {Remote}: unknown stream key")]
    private static partial void LogBadKey(ILogger logger, string remote);

    [LoggerMessage(Level = LogLevel.Warning, Message = "[stream {Stream}] publish from {Remote} denied: {Reason}")]
    private static partial void LogDenied(ILogger logger, string stream, string remote, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "[stream {Stream}] second publisher {Remote} refused: already live from {Publisher}")]
    private static partial void LogAlreadyLive(ILogger logger, string stream, string remote, string publisher);

    [LoggerMessage(Level = LogLevel.Warning, Message = "connect from {Remote} refused: unknown application \"{App}\" (expected \"{Expected}\")")]
    private static partial void LogUnknownApp(ILogger logger, string remote, string app, string expected);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] player {Remote} started")]
    private static partial void LogPlayStarted(ILogger logger, string stream, string remote);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] player {Remote} stopped")]
    private static partial void LogPlayEnded(ILogger logger, string stream, string remote);

    [LoggerMessage(Level = LogLevel.Information, Message = "play refused from {Remote}: no such live stream")]
    private static partial void LogPlayNotFound(ILogger logger, string remote);

    [LoggerMessage(Level = LogLevel.Error, Message = "[stream {Stream}] closing {Remote}: internal error (a bug: please report it with this log); other connections are unaffected")]
    private static partial void LogInternalError(ILogger logger, string stream, string remote, Exception error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "[stream {Stream}] closing {Remote}: protocol error: {Error}")]
    private static partial void LogProtocolError(ILogger logger, string stream, string remote, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] connection {Remote} lost: {Error}")]
    private static partial void LogConnectionLost(ILogger logger, string stream, string remote, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "[stream {Stream}] closing {Remote}: {Reason}")]
    private static partial void LogClosed(ILogger logger, string stream, string remote, string reason);
}
