using System.Collections.Concurrent;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Restream.Ingest;
using Restream.Ingest.Hub;

namespace Restream.Relay;

/// <summary>
/// Starts a pusher for every enabled destination when a stream goes live, lets them drain and close
/// when it ends, and applies destination changes to live streams (add, enable, disable, delete, edit)
/// without touching the destinations that did not change.
/// </summary>
public sealed class RelayService : IHostedService
{
    private readonly StreamRegistry _registry;
    private readonly RelayOptions _options;
    private readonly TimeProvider _time;
    private readonly ILoggerFactory _loggers;
    private readonly X509Certificate2Collection? _extraTrust;
    private readonly ConcurrentDictionary<StreamHub, LiveRelay> _live = new();
    private readonly CancellationTokenSource _shutdown = new();

    public RelayService(StreamRegistry registry, IOptions<RelayOptions> options, TimeProvider time, ILoggerFactory loggers)
    {
        _registry = registry;
        _options = options.Value;
        _time = time;
        _loggers = loggers;
        _extraTrust = CertificateTrust.Load(_options.TrustedCertificateFile);
    }

    /// <summary>Raised when a destination of a live stream changes state.</summary>
    public event Action<StreamHub, DestinationPusher, DestinationState>? DestinationStateChanged;

    private sealed record Running(DestinationPusher Pusher, Task Run, CancellationTokenSource Stop);

    private sealed class LiveRelay(StreamHub hub)
    {
        public StreamHub Hub { get; } = hub;
        public Dictionary<string, Running> Pushers { get; } = [];
    }

    /// <summary>The destinations of a live stream with their state and counters.</summary>
    public IReadOnlyList<DestinationStatus> GetDestinations(string channelName)
    {
        foreach (var (hub, relay) in _live)
        {
            if (hub.Name == channelName)
            {
                lock (relay)
                {
                    return [.. relay.Pushers.Values.Select(p => p.Pusher.GetStatus())];
                }
            }
        }

        return [];
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _registry.StreamStarted += OnStreamStarted;
        _registry.StreamEnded += OnStreamEnded;
        return Task.CompletedTask;
    }

    private void OnStreamStarted(StreamHub hub, ChannelConfig channel)
    {
        var relay = new LiveRelay(hub);
        _live[hub] = relay;
        Apply(relay, channel);
    }

    /// <summary>
    /// Brings a live stream's pushers in line with <paramref name="channel"/>: starts new or newly enabled
    /// destinations, stops removed or disabled ones, restarts edited ones, leaves the rest alone.
    /// Does nothing when the channel is not live.
    /// </summary>
    public void Apply(ChannelConfig channel)
    {
        foreach (var (hub, relay) in _live)
        {
            if (hub.Name == channel.Name)
            {
                Apply(relay, channel);
            }
        }
    }

    private void Apply(LiveRelay relay, ChannelConfig channel)
    {
        var wanted = channel.Destinations.Where(d => d.Enabled).ToDictionary(d => d.Id);
        var stopping = new List<Running>();
        lock (relay)
        {
            foreach (var (id, running) in relay.Pushers.ToList())
            {
                if (!wanted.TryGetValue(id, out var destination) || destination != running.Pusher.Destination)
                {
                    relay.Pushers.Remove(id);
                    stopping.Add(running);
                }
            }

            foreach (var (id, destination) in wanted)
            {
                if (!relay.Pushers.ContainsKey(id))
                {
                    relay.Pushers[id] = Start(relay.Hub, destination);
                }
            }
        }

        foreach (var running in stopping)
        {
            try
            {
                running.Stop.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // it had finished already
            }
        }
    }

    private Running Start(StreamHub hub, DestinationConfig destination)
    {
        var stop = CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token);
        var pusher = new DestinationPusher(hub, destination, _options, _extraTrust, _time, _loggers.CreateLogger<DestinationPusher>());
        pusher.StateChanged += (p, state) => DestinationStateChanged?.Invoke(hub, p, state);
        var run = Task.Run(async () =>
        {
            try
            {
                await pusher.RunAsync(stop.Token).ConfigureAwait(false);
            }
            finally
            {
                stop.Dispose();
            }
        }, CancellationToken.None);
        return new Running(pusher, run, stop);
    }

    private void OnStreamEnded(StreamHub hub)
    {
        if (!_live.TryRemove(hub, out var relay))
        {
            return;
        }

        // Pushers see the end of their queues, send what is left and unpublish; give them a while.
        _ = Task.Run(async () =>
        {
            Running[] running;
            lock (relay)
            {
                running = [.. relay.Pushers.Values];
            }

            var all = Task.WhenAll(running.Select(r => r.Run));
            if (await Task.WhenAny(all, Task.Delay(_options.DrainTimeout, _time)).ConfigureAwait(false) != all)
            {
                foreach (var r in running)
                {
                    try
                    {
                        await r.Stop.CancelAsync().ConfigureAwait(false);
                    }
                    catch (ObjectDisposedException)
                    {
                        // finished meanwhile
                    }
                }
            }

            await all.ConfigureAwait(false);
        });
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _registry.StreamStarted -= OnStreamStarted;
        _registry.StreamEnded -= OnStreamEnded;
        await _shutdown.CancelAsync().ConfigureAwait(false);
        var runs = _live.Values.SelectMany(r =>
        {
            lock (r)
            {
                return r.Pushers.Values.Select(p => p.Run).ToList();
            }
        }).ToArray();
        await Task.WhenAll(runs).WaitAsync(cancellationToken).ConfigureAwait(false);
    }
}
