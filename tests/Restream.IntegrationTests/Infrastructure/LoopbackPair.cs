using System.Net;
using System.Net.Sockets;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>Both ends of one real loopback TCP connection, for tests of our socket code.</summary>
internal sealed class LoopbackPair : IDisposable
{
    private LoopbackPair(Socket client, Socket server) => (Client, Server) = (client, server);

    /// <summary>The end that connected.</summary>
    public Socket Client { get; }

    /// <summary>The end that was accepted.</summary>
    public Socket Server { get; }

    public static async Task<LoopbackPair> OpenAsync(Socket client)
    {
        using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        await client.ConnectAsync(listener.LocalEndPoint!);
        return new LoopbackPair(client, await listener.AcceptAsync());
    }

    public void Dispose()
    {
        Client.Dispose();
        Server.Dispose();
    }
}
