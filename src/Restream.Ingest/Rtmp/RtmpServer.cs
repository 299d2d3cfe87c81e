using System.Collections.Concurrent;
using System.Net;
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
    private int _open;

    public long Accepted => Interlocked.Read(ref _accepted);
    public long RejectedKeys => Interlocked.Read(ref _rejectedKeys);
    public long ProtocolErrors => Interlocked.Read(ref _protocolErrors);
    public int Open => Volatile.Read(ref _open);

    internal void OnAccepted() { Interlocked.Increment(ref _accepted); Interlocked.Increment(ref _open); }
    internal void OnClosed() => Interlocked.Decrement(ref _open);
    internal void OnRejectedKey() => Interlocked.Increment(ref _rejectedKeys);
    internal void OnProtocolError() => Interlocked.Increment(ref _protocolErrors);
}

/// <summary>The RTMP listener: accepts connections and runs one session per connection.</summary>
public sealed partial class RtmpServer(
    IOptions<RtmpIngestOptions> options,
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

    /// <summary>The address actually listened on (useful with port 0).</summary>
    public Task<IPEndPoint> BoundEndpoint => _bound.Task;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        using var listener = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
        var address = IPAddress.Parse(o.Address);
        var endpoint = new IPEndPoint(address.AddressFamily == AddressFamily.InterNetwork ? address.MapToIPv6() : address, o.Port);
        listener.DualMode = true;
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        try
        {
            listener.Bind(endpoint);
            listener.Listen(512);
        }
        catch (SocketException e)
        {
            _bound.TrySetException(e);
            LogBindFailed(_log, o.Address, o.Port, e.Message);
            throw;
        }

        var bound = (IPEndPoint)listener.LocalEndPoint!;
        var shown = new IPEndPoint(bound.Address.IsIPv4MappedToIPv6 ? bound.Address.MapToIPv4() : bound.Address, bound.Port);
        _bound.TrySetResult(shown);
        LogListening(_log, shown.ToString(), o.App);

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
            var session = new RtmpServerSession(socket, o, catalog, authorizer, registry, counters, time, loggers.CreateLogger<RtmpServerSession>());
            _sessions[session] = RunSessionAsync(session, stoppingToken);
        }

        await Task.WhenAll(_sessions.Values).ConfigureAwait(false);
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

    [LoggerMessage(Level = LogLevel.Information, Message = "RTMP ingest listening on {Endpoint}, app \"{App}\"")]
    private static partial void LogListening(ILogger logger, string endpoint, string app);

    [LoggerMessage(Level = LogLevel.Critical, Message = "RTMP ingest cannot listen on {Address}:{Port}: {Error} (set Restream:Rtmp:Port)")]
    private static partial void LogBindFailed(ILogger logger, string address, int port, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "RTMP accept failed: {Error}")]
    private static partial void LogAcceptFailed(ILogger logger, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "RTMP connection from {Remote} refused: {Max} connections open (Restream:Rtmp:MaxConnections)")]
    private static partial void LogTooManyConnections(ILogger logger, string remote, int max);
}
