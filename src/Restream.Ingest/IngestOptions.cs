namespace Restream.Ingest;

/// <summary>Options of the RTMP listener (<c>Restream:Rtmp</c>).</summary>
public sealed class RtmpIngestOptions
{
    /// <summary>TCP port for RTMP. 0 picks a free port (tests).</summary>
    public int Port { get; set; } = 1935;

    /// <summary>Address to listen on.</summary>
    public string Address { get; set; } = "0.0.0.0";

    /// <summary>The application name publishers use: <c>rtmp://host/{App}/{streamKey}</c>.</summary>
    public string App { get; set; } = "live";

    /// <summary>Chunk size we send with.</summary>
    public int ChunkSize { get; set; } = 4096;

    /// <summary>How long a connection may take from accept to publish or play.</summary>
    public TimeSpan PublishTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>A publisher that sends nothing for this long is disconnected.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often we ping connected peers (keeps NAT mappings alive, measures RTT).</summary>
    public TimeSpan PingInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Most simultaneous RTMP connections this node accepts.</summary>
    public int MaxConnections { get; set; } = 1000;

    /// <summary>
    /// Merged reads for publishers: a small frame (audio) waits in the kernel until this much of the
    /// stream's bytes has arrived (typically the next video frame), so both are read and relayed
    /// with one wake-up. Video is not delayed; audio waits at most one video frame interval.
    /// A publisher that waits for our acknowledgements before it sends more (Nagle's algorithm, as
    /// FFmpeg's RTMP client) is read as its bytes arrive once the reader has seen it.
    /// 0 reads every frame as soon as it arrives.
    /// </summary>
    public TimeSpan MergedRead { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// Merged reads under a latency budget (with <see cref="MergedRead"/> and <see cref="ReceiveThreads"/>):
    /// frames are paired from the stream's own timing so that none waits longer than this for another
    /// one, at the cost of more writes (about 47 a second instead of 30 for 30 fps video with 48 kHz AAC).
    /// 0 (the default) pairs every audio frame with the next video frame, whatever the wait: the least CPU.
    /// </summary>
    public TimeSpan LatencyBudget { get; set; } = TimeSpan.Zero;

    /// <summary>
    /// Read each plain RTMP connection on a thread of its own (Linux): one wake-up and two system calls
    /// per publisher read, instead of the runtime's shared socket loop. Off: connections share the
    /// thread pool like any .NET socket (fewer threads, more CPU per frame).
    /// </summary>
    public bool ReceiveThreads { get; set; } = true;

    /// <summary>Whether <c>play</c> by channel name or stream key is allowed (players, transcode workers).</summary>
    public bool AllowPlay { get; set; } = true;
}

/// <summary>Options of the RTMPS listener (<c>Restream:Rtmps</c>): RTMP inside TLS.</summary>
public sealed class RtmpsIngestOptions
{
    /// <summary>TCP port for RTMPS. 0 picks a free port (tests).</summary>
    public int Port { get; set; } = 1936;

    /// <summary>Address to listen on.</summary>
    public string Address { get; set; } = "0.0.0.0";

    /// <summary>The certificate: a PEM file (with <see cref="KeyFile"/>) or a PFX/PKCS#12 file. RTMPS is off without one.</summary>
    public string? CertificateFile { get; set; }

    /// <summary>The PEM private key of <see cref="CertificateFile"/>; empty when the PEM holds both, or for PFX.</summary>
    public string? KeyFile { get; set; }

    /// <summary>The PFX password, if any.</summary>
    public string? Password { get; set; }

    /// <summary>Time allowed for the TLS handshake.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    public bool Enabled => !string.IsNullOrEmpty(CertificateFile);
}

/// <summary>Options of the SRT listener (<c>Restream:Srt</c>).</summary>
public sealed class SrtIngestOptions
{
    /// <summary>Turns the SRT listener on.</summary>
    public bool Enabled { get; set; }

    /// <summary>UDP port. 0 is not allowed here: libsrt binds what it is given.</summary>
    public int Port { get; set; } = 9000;

    public string Address { get; set; } = "0.0.0.0";

    /// <summary>Receiver latency (SRTO_LATENCY): how long libsrt may wait for retransmissions.</summary>
    public int LatencyMs { get; set; } = 200;

    /// <summary>Encryption passphrase (10-79 characters) callers must use; none when empty.</summary>
    public string? Passphrase { get; set; }

    /// <summary>AES key length in bytes with a passphrase: 16, 24 or 32.</summary>
    public int KeyLength { get; set; } = 16;

    /// <summary>A publisher that sends nothing for this long is disconnected.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Bandwidth allowed for retransmissions, in percent above the stream's rate (SRTO_OHEADBW, 5-100).</summary>
    public int OverheadBandwidthPercent { get; set; } = 25;
}
