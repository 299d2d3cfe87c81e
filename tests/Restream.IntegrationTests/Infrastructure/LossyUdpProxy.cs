using System.Net;
using System.Net.Sockets;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>
/// A lossy network link on loopback: forwards UDP datagrams between one client and a server and drops
/// a given share of them in each direction (this kernel has no netem qdisc, so the loss is made here).
/// Loss starts <c>after</c> the first datagram: a link that is lossy in steady state. (libsrt starts
/// from an assumed 100 ms RTT, so until its first measurements its periodic loss reports are too slow
/// for a 200 ms latency on loopback, and a lost report in the first second costs frames at random.)
/// </summary>
public sealed class LossyUdpProxy : IAsyncDisposable
{
    private readonly Socket _front = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private readonly Socket _back = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private readonly IPEndPoint _server;
    private readonly double _loss;
    private readonly Random _random = new(20261124);
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _forward;
    private readonly Thread _backward;
    private readonly TimeSpan _after;
    private long _firstSeen;
    private EndPoint? _client;
    private long _dropped;
    private long _passed;

    public LossyUdpProxy(int serverPort, double loss, TimeSpan? after = null)
    {
        _server = new IPEndPoint(IPAddress.Loopback, serverPort);
        _loss = loss;
        _after = after ?? TimeSpan.Zero;
        foreach (var socket in (Socket[])[_front, _back])
        {
            // As large as the kernel allows (net.core.rmem_max), like libsrt's own sockets: a keyframe is a burst.
            socket.ReceiveBufferSize = 8 << 20;
            socket.ReceiveTimeout = 250; // the threads look at the stop flag at least this often
            socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        }

        Port = ((IPEndPoint)_front.LocalEndPoint!).Port;
        _forward = new Thread(Forward) { IsBackground = true, Name = "lossy-proxy-forward" };
        _backward = new Thread(Backward) { IsBackground = true, Name = "lossy-proxy-backward" };
        _forward.Start();
        _backward.Start();
    }

    public int Port { get; }
    public long Dropped => Interlocked.Read(ref _dropped);
    public long Passed => Interlocked.Read(ref _passed);

    private bool Drop()
    {
        var first = Interlocked.CompareExchange(ref _firstSeen, System.Diagnostics.Stopwatch.GetTimestamp(), 0);
        if (first == 0 || System.Diagnostics.Stopwatch.GetElapsedTime(first) < _after)
        {
            return false;
        }

        lock (_random)
        {
            return _random.NextDouble() < _loss;
        }
    }

    private void Forward() => Relay(_front, _back, from => _client = from, () => _server);

    private void Backward() => Relay(_back, _front, _ => { }, () => _client);

    /// <summary>
    /// Moves datagrams from one socket out of the other, dropping the configured share. A thread of its own with
    /// blocking calls: the test process is busy (the server, ffmpeg's output, probes), and a proxy that waited for
    /// the thread pool would overflow its socket buffer in bursts and add loss of its own to the 2 % it is asked for.
    /// </summary>
    private void Relay(Socket from, Socket to, Action<EndPoint> seen, Func<EndPoint?> target)
    {
        var buffer = new byte[65536];
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                EndPoint remote = new IPEndPoint(IPAddress.Any, 0);
                var received = from.ReceiveFrom(buffer, ref remote);
                seen(remote);
                if (target() is not { } destination || Drop())
                {
                    Interlocked.Increment(ref _dropped);
                    continue;
                }

                Interlocked.Increment(ref _passed);
                to.SendTo(buffer.AsSpan(0, received), destination);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                if (_stop.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _front.Dispose();
        _back.Dispose();
        _forward.Join();
        _backward.Join();
    }
}
