using System.Net;
using System.Net.Sockets;
using Restream.Ingest.Rtmp;
using Restream.Media.Amf;
using Restream.Media.Rtmp;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>
/// A destination that accepts the publish and then stops reading, like an ingest whose network
/// path has collapsed: the sender's socket buffers fill and its writes stall.
/// </summary>
public sealed class StallingRtmpServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _sockets = [];
    private readonly Task _accept;

    public StallingRtmpServer()
    {
        _listener.Server.ReceiveBufferSize = 8192; // inherited by accepted sockets: no hidden megabytes
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accept = AcceptAsync();
    }

    public int Port { get; }
    public int PublishesAccepted { get; private set; }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            lock (_sockets)
            {
                _sockets.Add(socket);
            }

            _ = ServeAsync(socket);
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        var connection = new RtmpConnection(new NetworkStream(socket, ownsSocket: false), "stall");
        try
        {
            await connection.AcceptHandshakeAsync(_stop.Token);
            while (true)
            {
                var (ok, message) = await connection.ReadMessageAsync(_stop.Token);
                if (!ok)
                {
                    return;
                }

                RtmpCommand? command = message.TypeId == RtmpMessageType.CommandAmf0 ? RtmpCommand.Parse(message.Payload) : null;
                message.Dispose();
                switch (command?.Name)
                {
                    case "connect":
                        await connection.SendCommandAsync(new RtmpCommand("_result", command.TransactionId, null,
                            [new AmfObject { { "level", "status" }, { "code", RtmpStatus.ConnectSuccess } }]), 0, _stop.Token);
                        break;
                    case "createStream":
                        await connection.SendCommandAsync(new RtmpCommand("_result", command.TransactionId, null, [1.0]), 0, _stop.Token);
                        break;
                    case "publish":
                        await connection.SendCommandAsync(RtmpCommand.OnStatus("status", RtmpStatus.PublishStart, "ok"), 1, _stop.Token);
                        PublishesAccepted++;
                        // Never read again: the connection stays open, the sender's buffers fill up.
                        await Task.Delay(Timeout.Infinite, _stop.Token);
                        return;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or RtmpProtocolException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accept;
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }
        }
    }
}
