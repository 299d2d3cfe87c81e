using Prometheus;
using Restream.Ingest.Hub;
using Restream.Ingest.Rtmp;
using Restream.Relay;
using Restream.Server.Api;

namespace Restream.Server;

/// <summary>
/// Prometheus metrics, all prefixed <c>restream_</c>, read from the live objects at scrape time. Labels
/// are channel and destination names, never keys or URLs. A stream's series go away when it ends.
/// </summary>
public sealed class RestreamMetrics
{
    private readonly StreamRegistry _registry;
    private readonly RelayService _relay;
    private readonly IngestCounters _ingest;
    private readonly ApiKeyAuthenticator _auth;
    private readonly Gauge _connectionsOpen;
    private readonly Counter _connections;
    private readonly Counter _rejectedKeys;
    private readonly Counter _protocolErrors;
    private readonly Counter _internalErrors;
    private readonly Counter _promptReadPublishers;
    private readonly Counter _apiAuthFailures;
    private readonly Gauge _liveStreams;
    private readonly Counter _streamBytes;
    private readonly Counter _streamFrames;
    private readonly Gauge _streamBitrate;
    private readonly Gauge _streamUptime;
    private readonly Gauge _linkRtt;
    private readonly Counter _linkLost;
    private readonly Counter _linkRetransmitted;
    private readonly Counter _destinationBytes;
    private readonly Counter _destinationFrames;
    private readonly Counter _destinationDropped;
    private readonly Counter _destinationReconnects;
    private readonly Gauge _destinationUp;
    private readonly Gauge _destinationState;
    private readonly Gauge _destinationLinkRtt;
    private readonly Counter _destinationLinkSent;
    private readonly Counter _destinationLinkLost;
    private readonly Counter _destinationLinkRetransmitted;
    private readonly Counter _destinationLinkDropped;
    private readonly Dictionary<string, (long Bytes, DateTimeOffset At)> _lastBytes = [];
    private readonly HashSet<string> _streamLabels = [];
    private readonly HashSet<(string, string)> _destinationLabels = [];
    private readonly TimeProvider _time;

    public RestreamMetrics(StreamRegistry registry, RelayService relay, IngestCounters ingest, ApiKeyAuthenticator auth, TimeProvider time)
    {
        _registry = registry;
        _relay = relay;
        _ingest = ingest;
        _auth = auth;
        _time = time;
        Registry = Metrics.NewCustomRegistry();
        var f = Metrics.WithCustomRegistry(Registry);
        _connectionsOpen = f.CreateGauge("restream_ingest_connections_open", "RTMP connections open now.");
        _connections = f.CreateCounter("restream_ingest_connections_total", "RTMP connections accepted.");
        _rejectedKeys = f.CreateCounter("restream_ingest_auth_failures_total", "Publishes refused for an unknown stream key.");
        _protocolErrors = f.CreateCounter("restream_ingest_protocol_errors_total", "Connections closed for malformed RTMP.");
        _internalErrors = f.CreateCounter("restream_ingest_internal_errors_total", "Connections ended by an error in our own handling (a bug; logged at Error with its stack).");
        _promptReadPublishers = f.CreateCounter("restream_ingest_prompt_read_publishers_total",
            "Publishers switched to reads as their bytes arrive: they hold back data until acknowledged (Nagle's algorithm, e.g. FFmpeg's RTMP client), or send in bursts the latency budget cannot predict. They cost more CPU than merged reads.");
        _apiAuthFailures = f.CreateCounter("restream_api_auth_failures_total", "API requests refused for a missing or invalid key.");
        _liveStreams = f.CreateGauge("restream_live_streams", "Streams live on this node.");
        string[] stream = ["channel"];
        _streamBytes = f.CreateCounter("restream_stream_received_bytes_total", "Bytes of media received from the publisher.", stream);
        _streamFrames = f.CreateCounter("restream_stream_received_frames_total", "Media frames received from the publisher.", stream);
        _streamBitrate = f.CreateGauge("restream_stream_bitrate_kbps", "Publisher bitrate over the last scrape interval.", stream);
        _streamUptime = f.CreateGauge("restream_stream_uptime_seconds", "Seconds since the stream went live.", stream);
        _linkRtt = f.CreateGauge("restream_ingest_link_rtt_ms", "Round-trip time of the publisher's SRT link.", stream);
        _linkLost = f.CreateCounter("restream_ingest_link_lost_packets_total", "Packets the publisher's SRT link lost (before retransmission).", stream);
        _linkRetransmitted = f.CreateCounter("restream_ingest_link_retransmitted_packets_total", "Retransmitted packets received on the publisher's SRT link.", stream);
        string[] destination = ["channel", "destination"];
        _destinationBytes = f.CreateCounter("restream_destination_sent_bytes_total", "Bytes sent to the destination.", destination);
        _destinationFrames = f.CreateCounter("restream_destination_sent_frames_total", "Frames sent to the destination.", destination);
        _destinationDropped = f.CreateCounter("restream_destination_dropped_frames_total", "Frames dropped because the destination fell behind.", destination);
        _destinationReconnects = f.CreateCounter("restream_destination_reconnects_total", "Reconnect attempts to the destination.", destination);
        _destinationUp = f.CreateGauge("restream_destination_up", "1 while the destination is live, 0 otherwise.", destination);
        _destinationState = f.CreateGauge("restream_destination_state",
            "The destination's state: 1 on the series of its current state (idle, connecting, live, retrying, failed), 0 on the others.", [.. destination, "state"]);
        // SRT destinations only: libsrt's own figures, added up over the destination's connections.
        _destinationLinkRtt = f.CreateGauge("restream_destination_link_rtt_ms", "Round-trip time of the destination's SRT link (while connected).", destination);
        _destinationLinkSent = f.CreateCounter("restream_destination_link_sent_packets_total", "Packets sent on the destination's SRT link, over all its connections.", destination);
        _destinationLinkLost = f.CreateCounter("restream_destination_link_lost_packets_total", "Packets the destination reported lost on its SRT link (before retransmission).", destination);
        _destinationLinkRetransmitted = f.CreateCounter("restream_destination_link_retransmitted_packets_total", "Packets retransmitted on the destination's SRT link.", destination);
        _destinationLinkDropped = f.CreateCounter("restream_destination_link_dropped_packets_total", "Packets dropped on the destination's SRT link because they were too late to send.", destination);
        Registry.AddBeforeCollectCallback(Update);

        // The process's own figures, as every Prometheus client exports them: CPU seconds, resident
        // memory, threads, open handles, GC collections per generation, managed heap size.
        DotNetStats.Register(Registry);
    }

    public CollectorRegistry Registry { get; }

    /// <summary>Each destination state and its <c>state</c> label, as the API names them.</summary>
    private static readonly (DestinationState State, string Label)[] StateLabels =
        [.. Enum.GetValues<DestinationState>().Select(s => (s, s.ToString().ToLowerInvariant()))];

    private void Update()
    {
        lock (_lastBytes)
        {
            _connectionsOpen.Set(_ingest.Open);
            _connections.IncTo(_ingest.Accepted);
            _rejectedKeys.IncTo(_ingest.RejectedKeys);
            _protocolErrors.IncTo(_ingest.ProtocolErrors);
            _internalErrors.IncTo(_ingest.InternalErrors);
            _promptReadPublishers.IncTo(_ingest.PromptReadPublishers);
            _apiAuthFailures.IncTo(_auth.Failures);
            var live = _registry.LiveStreams;
            _liveStreams.Set(live.Count);
            var now = _time.GetUtcNow();
            var seenStreams = new HashSet<string>();
            var seenDestinations = new HashSet<(string, string)>();
            foreach (var hub in live)
            {
                seenStreams.Add(hub.Name);
                _streamBytes.WithLabels(hub.Name).IncTo(hub.BytesIn);
                _streamFrames.WithLabels(hub.Name).IncTo(hub.FramesIn);
                _streamUptime.WithLabels(hub.Name).Set((now - hub.StartedAt).TotalSeconds);
                if (hub.LinkStats?.Invoke() is { } link)
                {
                    _linkRtt.WithLabels(hub.Name).Set(link.RttMs);
                    _linkLost.WithLabels(hub.Name).IncTo(link.PacketsLost);
                    _linkRetransmitted.WithLabels(hub.Name).IncTo(link.PacketsRetransmitted);
                }

                var key = hub.Name;
                var (bytes, at) = _lastBytes.TryGetValue(key, out var last) ? last : (0L, hub.StartedAt);
                var seconds = (now - at).TotalSeconds;
                if (seconds > 0.5)
                {
                    _streamBitrate.WithLabels(hub.Name).Set((hub.BytesIn - bytes) * 8 / 1000.0 / seconds);
                    _lastBytes[key] = (hub.BytesIn, now);
                }

                foreach (var d in _relay.GetDestinations(hub.Name))
                {
                    var labels = (hub.Name, d.Name);
                    seenDestinations.Add(labels);
                    _destinationBytes.WithLabels(hub.Name, d.Name).IncTo(d.BytesSent);
                    _destinationFrames.WithLabels(hub.Name, d.Name).IncTo(d.FramesSent);
                    _destinationDropped.WithLabels(hub.Name, d.Name).IncTo(d.FramesDropped);
                    _destinationReconnects.WithLabels(hub.Name, d.Name).IncTo(d.Reconnects);
                    _destinationUp.WithLabels(hub.Name, d.Name).Set(d.State == DestinationState.Live ? 1 : 0);
                    foreach (var (state, label) in StateLabels)
                    {
                        _destinationState.WithLabels(hub.Name, d.Name, label).Set(d.State == state ? 1 : 0);
                    }
                    if (d.Link is { } destinationLink)
                    {
                        _destinationLinkRtt.WithLabels(hub.Name, d.Name).Set(destinationLink.RttMs);
                    }
                    else
                    {
                        _destinationLinkRtt.RemoveLabelled(hub.Name, d.Name); // not connected: no RTT to show
                    }

                    if (d.LinkTotals is { } totals)
                    {
                        _destinationLinkSent.WithLabels(hub.Name, d.Name).IncTo(totals.PacketsSent);
                        _destinationLinkLost.WithLabels(hub.Name, d.Name).IncTo(totals.PacketsLost);
                        _destinationLinkRetransmitted.WithLabels(hub.Name, d.Name).IncTo(totals.PacketsRetransmitted);
                        _destinationLinkDropped.WithLabels(hub.Name, d.Name).IncTo(totals.PacketsDropped);
                    }
                }
            }

            foreach (var gone in _streamLabels.Except(seenStreams).ToList())
            {
                _streamBytes.RemoveLabelled(gone);
                _streamFrames.RemoveLabelled(gone);
                _streamBitrate.RemoveLabelled(gone);
                _streamUptime.RemoveLabelled(gone);
                _linkRtt.RemoveLabelled(gone);
                _linkLost.RemoveLabelled(gone);
                _linkRetransmitted.RemoveLabelled(gone);
                _lastBytes.Remove(gone);
            }

            foreach (var (channel, name) in _destinationLabels.Except(seenDestinations).ToList())
            {
                _destinationBytes.RemoveLabelled(channel, name);
                _destinationFrames.RemoveLabelled(channel, name);
                _destinationDropped.RemoveLabelled(channel, name);
                _destinationReconnects.RemoveLabelled(channel, name);
                _destinationUp.RemoveLabelled(channel, name);
                foreach (var (_, label) in StateLabels)
                {
                    _destinationState.RemoveLabelled(channel, name, label);
                }
                _destinationLinkRtt.RemoveLabelled(channel, name);
                _destinationLinkSent.RemoveLabelled(channel, name);
                _destinationLinkLost.RemoveLabelled(channel, name);
                _destinationLinkRetransmitted.RemoveLabelled(channel, name);
                _destinationLinkDropped.RemoveLabelled(channel, name);
            }

            _streamLabels.Clear();
            _streamLabels.UnionWith(seenStreams);
            _destinationLabels.Clear();
            _destinationLabels.UnionWith(seenDestinations);
        }
    }
}
