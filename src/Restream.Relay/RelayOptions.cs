namespace Restream.Relay;

/// <summary>Options of the outgoing pushers (<c>Restream:Relay</c>).</summary>
public sealed class RelayOptions
{
    /// <summary>First wait before reconnecting a failed destination.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Longest wait between reconnect attempts for network failures. Kept short by default so a
    /// destination that comes back is live again within about a second.
    /// </summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Wait after a destination refused us (bad key, unknown app): retrying fast will not help.</summary>
    public TimeSpan RejectedBackoff { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Time allowed for TCP connect, TLS and the RTMP handshake through publish.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Frames a destination may fall behind before it drops a GOP.</summary>
    public int QueueFrames { get; set; } = 1024;

    /// <summary>Bytes a destination may fall behind before it drops a GOP.</summary>
    public long QueueBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>
    /// A PEM file of extra CA or self-signed certificates to trust for rtmps:// destinations (an
    /// owner's own SRS with a private CA). The system store is always trusted too.
    /// </summary>
    public string? TrustedCertificateFile { get; set; }

    /// <summary>
    /// Kernel send buffer per destination socket, in bytes. Bounded so that a stalled destination
    /// shows up in our own keyframe-aware queue within seconds, instead of hiding megabytes (and
    /// seconds of latency) in the kernel. 0 leaves the system's auto-tuning.
    /// </summary>
    public int SocketSendBuffer { get; set; } = 1024 * 1024;

    /// <summary>
    /// How long an audio frame may wait to go out together with the next video frame, in one write
    /// (merged writes, as SRS's <c>mw_latency</c>; nginx-rtmp gets the same from Nagle's algorithm).
    /// One packet instead of two or three per video frame: less CPU for us and for the receiver.
    /// Video frames are never held, so the picture is not delayed; audio waits at most this long
    /// (plus one audio frame) and keeps its order and timestamps. 0 sends every frame at once.
    /// </summary>
    public TimeSpan AudioMergeWindow { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>How long an ending stream's pushers may take to send what they still hold.</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(5);
}
