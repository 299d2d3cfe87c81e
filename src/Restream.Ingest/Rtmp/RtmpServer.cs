using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Restream.Ingest.Hub;

namespace Restream.Ingest.Rtmp;

/// <summary>Counters of the RTMP listener, read by metrics and tests.</summary>
public sealed class IngestCounters
{
    private long _accepted;
    private long _rejectedKeys;
    private long _protocolErrors;
    private long _internalErrors;
    private long _promptReadPublishers;
    private long _watchdogTicks;
    private int _open;

    public long Accepted => Interlocked.Read(ref _accepted);
    public long RejectedKeys => Interlocked.Read(ref _rejectedKeys);
    public long ProtocolErrors => Interlocked.Read(ref _protocolErrors);

    /// <summary>Connections ended by an exception our code did not expect: a bug, logged at Error with its stack.</summary>
    public long InternalErrors => Interlocked.Read(ref _internalErrors);

    /// <summary>
    /// Publishers switched to reads as their bytes arrive (see <see cref="RtmpConnection.PromptReads"/>): they
    /// wait for our acknowledgements, or send in bursts the latency budget cannot predict. One switched
    /// back by a lossy moment and again later counts twice.
    /// </summary>
    public long PromptReadPublishers => Interlocked.Read(ref _promptReadPublishers);

    public int Open => Volatile.Read(ref _open);

    /// <summary>
    /// Times a session's watchdog timer woke (each is a wake-up of the timer thread and of a
    /// thread-pool worker): about one a second per connection, one every few seconds per publisher
    /// read on its own thread, whose checks are made between its reads.
    /// </summary>
    internal long WatchdogTicks => Interlocked.Read(ref _watchdogTicks);

    internal void OnAccepted() { Interlocked.Increment(ref _accepted); Interlocked.Increment(ref _open); }
    internal void OnClosed() => Interlocked.Decrement(ref _open);
    internal void OnRejectedKey() => Interlocked.Increment(ref _rejectedKeys);
    internal void OnProtocolError() => Interlocked.Increment(ref _protocolErrors);
    internal void OnInternalError() => Interlocked.Increment(ref _internalErrors);
    internal void OnPromptReads() => Interlocked.Increment(ref _promptReadPublishers);
    internal void OnWatchdogTick() => Interlocked.Increment(ref _watchdogTicks);
}

/// <summary>The RTMP listener (and the RTMPS one when a certificate is configured): one session per connection.</summary>
public sealed partial class RtmpServer(
    IOptions<RtmpIngestOptions> options,
    IOptions<RtmpsIngestOptions> tlsOptions,
    IChannelCatalog catalog,
    IPublishAuthorizer authorizer,
    StreamRegistry registry,
    IngestCounters counters,
    TimeProvider time,
    ILoggerFactory loggers) : BackgroundService
{
    private readonly ILogger _log = loggers.CreateLogger<RtmpServer>();
    private readonly ConcurrentDictionary<RtmpServerSession, Task> _sessions = new();
    private readonly TaskCompletionSource<IPEndPoint> _bound = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<IPEndPoint?> _boundTls = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The address actually listened on (useful with port 0).</summary>
    public Task<IPEndPoint> BoundEndpoint => _bound.Task;

    /// <summary>The RTMPS address listened on, or null when RTMPS is off.</summary>
    public Task<IPEndPoint?> BoundTlsEndpoint => _boundTls.Task;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        var tls = tlsOptions.Value;
        using var listener = Listen(o.Address, o.Port, "Restream:Rtmp:Port", _bound);

        LogListening(_log, "RTMP", _bound.Task.Result.ToString(), o.App);
        Socket? tlsListener = null;
        TlsCertificate? certificate = null;
        if (tls.Enabled)
        {
            try
            {
                certificate = new TlsCertificate(tls, time);
            }
            catch (Exception e) when (e is IOException or System.Security.Cryptography.CryptographicException or ArgumentException)
            {
                LogCertificateFailed(_log, tls.CertificateFile!, e.Message);
                _boundTls.TrySetException(e);
                throw;
            }

            certificate.Reloaded += (cert, error) =>
            {
                if (cert is not null)
                {
                    LogCertificateReloaded(_log, cert.Subject, cert.NotAfter);
                }
                else
                {
                    LogCertificateReloadFailed(_log, error?.Message ?? "?");
                }
            };
            var tlsBound = new TaskCompletionSource<IPEndPoint>();
            tlsListener = Listen(tls.Address, tls.Port, "Restream:Rtmps:Port", tlsBound);
            _boundTls.TrySetResult(tlsBound.Task.Result);
            LogListening(_log, "RTMPS", tlsBound.Task.Result.ToString(), o.App);
        }
        else
        {
            _boundTls.TrySetResult(null);
        }

        using (tlsListener)
        {
            var loops = new List<Task> { AcceptAsync(listener, null, stoppingToken) };
            if (tlsListener is not null && certificate is not null)
            {
                loops.Add(AcceptAsync(tlsListener, async (socket, ct) =>
                {
                    var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
                    try
                    {
                        await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                        {
                            ServerCertificateSelectionCallback = (_, _) => certificate.Current,
                            ClientCertificateRequired = false,
                        }, ct).ConfigureAwait(false);
                        return ssl;
                    }
                    catch
                    {
                        await ssl.DisposeAsync().ConfigureAwait(false);
                        throw;
                    }
                }, stoppingToken));
            }

            await Task.WhenAll(loops).ConfigureAwait(false);
        }

        await Task.WhenAll(_sessions.Values).ConfigureAwait(false);
    }

    private Socket Listen(string address, int port, string key, TaskCompletionSource<IPEndPoint> bound)
    {
        var listener = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
        var ip = IPAddress.Parse(address);
        var endpoint = new IPEndPoint(ip.AddressFamily == AddressFamily.InterNetwork ? ip.MapToIPv6() : ip, port);
        listener.DualMode = true;
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        try
        {
            listener.Bind(endpoint);
            listener.Listen(512);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            bound.TrySetException(e);
            LogBindFailed(_log, address, port, e.Message, key);
            throw;
        }

        var local = (IPEndPoint)listener.LocalEndPoint!;
        bound.TrySetResult(new IPEndPoint(local.Address.IsIPv4MappedToIPv6 ? local.Address.MapToIPv4() : local.Address, local.Port));
        return listener;
    }

    private async Task AcceptAsync(Socket listener, Func<Socket, CancellationToken, Task<Stream>>? wrap, CancellationToken stoppingToken)
    {
        var o = options.Value;
        while (!stoppingToken.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            catch (SocketException e)
            {
                LogAcceptFailed(_log, e.Message);
                continue;
            }

            if (_sessions.Count >= o.MaxConnections)
            {
                LogTooManyConnections(_log, socket.RemoteEndPoint?.ToString() ?? "?", o.MaxConnections);
                socket.Dispose();
                continue;
            }

            socket.NoDelay = true;
            counters.OnAccepted();
            var session = new RtmpServerSession(socket, o, catalog, authorizer, registry, counters, time, loggers.CreateLogger<RtmpServerSession>(), wrap);
            _sessions[session] = RunSessionAsync(session, stoppingToken);
        }
    }

    private async Task RunSessionAsync(RtmpServerSession session, CancellationToken stoppingToken)
    {
        await Task.Yield();
        try
        {
            await session.RunAsync(stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            counters.OnClosed();
            _sessions.TryRemove(session, out _);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Protocol} ingest listening on {Endpoint}, app \"{App}\"")]
    private static partial void LogListening(ILogger logger, string protocol, string endpoint, string app);

    [LoggerMessage(Level = LogLevel.Critical, Message = "ingest cannot listen on {Address}:{Port}: {Error} (set {Key})")]
    private static partial void LogBindFailed(ILogger logger, string address, int port, string error, string key);

    [LoggerMessage(Level = LogLevel.Critical, Message = "RTMPS certificate {File} cannot be loaded: {Error} (Restream:Rtmps:CertificateFile, KeyFile, Password)")]
    private static partial void LogCertificateFailed(ILogger logger, string file, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "RTMPS certificate reloaded: {Subject}, valid until {NotAfter:u}")]
    private static partial void LogCertificateReloaded(ILogger logger, string subject, DateTime notAfter);

    [LoggerMessage(Level = LogLevel.Warning, Message = "RTMPS certificate files changed but cannot be loaded ({Error}); still serving the previous one")]
    private static partial void LogCertificateReloadFailed(ILogger logger, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "RTMP accept failed: {Error}")]
    private static partial void LogAcceptFailed(ILogger logger, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "RTMP connection from {Remote} refused: {Max} connections open (Restream:Rtmp:MaxConnections)")]
    private static partial void LogTooManyConnections(ILogger logger, string remote, int max);
}
