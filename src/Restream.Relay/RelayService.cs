using System.Collections.Concurrent;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Restream.Ingest;
using Restream.Ingest.Hub;

namespace Restream.Relay;

/// <summary>
/// Starts a pusher for every enabled destination when a stream goes live, and lets them drain and
/// close when it ends.
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

    private sealed record LiveRelay(List<(DestinationPusher Pusher, Task Run)> Pushers, CancellationTokenSource Stop);

    /// <summary>The destinations of a live stream with their state and counters.</summary>
    public IReadOnlyList<DestinationStatus> GetDestinations(string channelName)
    {
        foreach (var (hub, relay) in _live)
        {
            if (hub.Name == channelName)
            {
                lock (relay.Pushers)
                {
                    return [.. relay.Pushers.Select(p => p.Pusher.GetStatus())];
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
        var stop = CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token);
        var relay = new LiveRelay([], stop);
        _live[hub] = relay;
        foreach (var destination in channel.Destinations.Where(d => d.Enabled))
        {
            var pusher = new DestinationPusher(hub, destination, _options, _extraTrust, _time, _loggers.CreateLogger<DestinationPusher>());
            lock (relay.Pushers)
            {
                relay.Pushers.Add((pusher, Task.Run(() => pusher.RunAsync(stop.Token), CancellationToken.None)));
            }
        }
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
            Task[] runs;
            lock (relay.Pushers)
            {
                runs = [.. relay.Pushers.Select(p => p.Run)];
            }

            var all = Task.WhenAll(runs);
            if (await Task.WhenAny(all, Task.Delay(_options.DrainTimeout, _time)).ConfigureAwait(false) != all)
            {
                await relay.Stop.CancelAsync().ConfigureAwait(false);
            }

            await all.ConfigureAwait(false);
            relay.Stop.Dispose();
        });
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _registry.StreamStarted -= OnStreamStarted;
        _registry.StreamEnded -= OnStreamEnded;
        await _shutdown.CancelAsync().ConfigureAwait(false);
        var runs = _live.Values.SelectMany(r => r.Pushers.Select(p => p.Run)).ToArray();
        await Task.WhenAll(runs).WaitAsync(cancellationToken).ConfigureAwait(false);
    }
}
