namespace Restream.Ingest.Hub;

/// <summary>The live streams of this node, one per channel, and news of them starting and ending.</summary>
public sealed class StreamRegistry
{
    private readonly object _gate = new();
    private readonly Dictionary<string, StreamHub> _live = [];

    /// <summary>Raised after a stream went live (its hub accepts frames already).</summary>
    public event Action<StreamHub, ChannelConfig>? StreamStarted;

    /// <summary>Raised after a stream ended.</summary>
    public event Action<StreamHub>? StreamEnded;

    public IReadOnlyList<StreamHub> LiveStreams
    {
        get
        {
            lock (_gate)
            {
                return [.. _live.Values];
            }
        }
    }

    public StreamHub? Find(string channelName)
    {
        lock (_gate)
        {
            return _live.GetValueOrDefault(channelName);
        }
    }

    /// <summary>Claims the channel for a publisher; false when someone is already live on it.</summary>
    public bool TryStart(ChannelConfig channel, string publisherRemote, TimeProvider time, out StreamHub hub)
    {
        lock (_gate)
        {
            if (_live.TryGetValue(channel.Name, out var existing))
            {
                hub = existing;
                return false;
            }

            hub = new StreamHub(channel.Id, channel.Name, publisherRemote, time);
            _live.Add(channel.Name, hub);
        }

        StreamStarted?.Invoke(hub, channel);
        return true;
    }

    public void Stop(StreamHub hub)
    {
        lock (_gate)
        {
            if (!_live.TryGetValue(hub.Name, out var current) || current != hub)
            {
                return;
            }

            _live.Remove(hub.Name);
        }

        hub.End();
        StreamEnded?.Invoke(hub);
    }
}
