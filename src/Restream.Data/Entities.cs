namespace Restream.Data;

/// <summary>A channel: one stream key (kept as a salted hash), its destinations.</summary>
public sealed class ChannelEntity
{
    public Guid Id { get; set; }
    public required string Name { get; set; }

    /// <summary>The public part of the stream key, used to find the channel; not a secret.</summary>
    public required string StreamKeyId { get; set; }
    public required byte[] StreamKeySalt { get; set; }
    public required byte[] StreamKeyHash { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public List<DestinationEntity> Destinations { get; set; } = [];
}

/// <summary>A destination of a channel. The platform key is stored encrypted (Data Protection).</summary>
public sealed class DestinationEntity
{
    public Guid Id { get; set; }
    public Guid ChannelId { get; set; }
    public required string Name { get; set; }
    public required string Platform { get; set; }
    public required string Url { get; set; }
    public string? ProtectedKey { get; set; }
    public bool Enabled { get; set; } = true;
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>An API key: an id to find it, a salted hash to check it, a scope.</summary>
public sealed class ApiKeyEntity
{
    public Guid Id { get; set; }
    public required string Name { get; set; }
    public required string KeyId { get; set; }
    public required byte[] Salt { get; set; }
    public required byte[] Hash { get; set; }
    public required string Scope { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
}

/// <summary>A stream that ended, with its totals.</summary>
public sealed class StreamSessionEntity
{
    public Guid Id { get; set; }
    public Guid? ChannelId { get; set; }
    public required string ChannelName { get; set; }
    public required string Publisher { get; set; }
    public DateTimeOffset StartedAt { get; set; }
    public DateTimeOffset EndedAt { get; set; }
    public long Frames { get; set; }
    public long Bytes { get; set; }
    public string? VideoCodec { get; set; }
    public int Width { get; set; }
    public int Height { get; set; }
}

/// <summary>An owner's endpoint that Restream calls on events; the signing secret is stored encrypted.</summary>
public sealed class WebhookEntity
{
    public Guid Id { get; set; }
    public required string Url { get; set; }
    public required string ProtectedSecret { get; set; }

    /// <summary>Comma-separated event names (on_publish, on_unpublish, on_destination_state).</summary>
    public required string Events { get; set; }
    public bool Enabled { get; set; } = true;
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>One delivery of one event to one webhook, with its outcome.</summary>
public sealed class WebhookDeliveryEntity
{
    public Guid Id { get; set; }
    public Guid WebhookId { get; set; }
    public required string Event { get; set; }
    public required string Status { get; set; }
    public int Attempts { get; set; }
    public int? StatusCode { get; set; }
    public string? Error { get; set; }
    public double DurationMs { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? CompletedAt { get; set; }
}
