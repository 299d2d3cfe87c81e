using System.Buffers;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Restream.Ingest.Rtmp;
using Restream.Media;
using Restream.Media.Amf;
using Restream.Media.Rtmp;

namespace Restream.Relay;

/// <summary>The destination said no (bad key, unknown app): a configuration problem, not a network one.</summary>
public sealed class DestinationRejectedException(string message) : Exception(message);

/// <summary>Where to publish: server URL (rtmp:// or rtmps://, with the app) and stream name (the key).</summary>
public sealed record PublishTarget(Uri ServerUrl, string StreamName)
{
    /// <summary>
    /// Splits a destination into server URL and stream name. When no key is given the last path
    /// segment of the URL is the stream name (<c>rtmp://host/app/key</c>), as OBS users paste it.
    /// </summary>
    public static PublishTarget From(Uri url, string? key)
    {
        if (!string.IsNullOrEmpty(key))
        {
            return new PublishTarget(url, key);
        }

        var path = url.AbsolutePath.Trim('/');
        var slash = path.LastIndexOf('/');
        if (slash <= 0)
        {
            throw new ArgumentException($"{url.Scheme}://{url.Host}/… has no stream key: give one, or put it last in the URL path");
        }

        var builder = new UriBuilder(url) { Path = "/" + path[..slash], Query = string.Empty };
        return new PublishTarget(builder.Uri, path[(slash + 1)..] + url.Query);
    }

    public string App
    {
        get
        {
            var app = ServerUrl.AbsolutePath.Trim('/');
            return string.IsNullOrEmpty(ServerUrl.Query) ? app : app + ServerUrl.Query;
        }
    }
}

/// <summary>
/// Publishes one stream to an RTMP or RTMPS server, the way OBS does: connect, releaseStream,
/// FCPublish, createStream, publish, then media. Used by the relay and by the agent.
/// </summary>
public sealed class RtmpPublishClient : IPublishClient
{
    private static readonly byte[] SetDataFrame = BuildSetDataFramePrefix();
    private readonly RtmpConnection _connection;
    private uint _streamId;
    private string _streamName = "";

    public long BytesSent => _connection.BytesSent;

    public Task UnpublishAsync(CancellationToken cancellationToken) => UnpublishAsync(_streamName, cancellationToken);

    private RtmpPublishClient(RtmpConnection connection)
    {
        _connection = connection;
    }

    public RtmpConnection Connection => _connection;

    /// <summary>The message stream the server gave us for publishing (set once <c>publish</c> is sent).</summary>
    internal uint StreamId => _streamId;

    public static async Task<RtmpPublishClient> ConnectAsync(
        PublishTarget target, X509Certificate2Collection? extraTrust, TimeProvider time, CancellationToken cancellationToken,
        int socketSendBuffer = 0)
    {
        var url = target.ServerUrl;
        var secure = url.Scheme.Equals("rtmps", StringComparison.OrdinalIgnoreCase);
        var port = url.IsDefaultPort || url.Port <= 0 ? (secure ? 443 : 1935) : url.Port;
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (socketSendBuffer > 0)
        {
            socket.SendBufferSize = socketSendBuffer;
        }

        Stream stream;
        try
        {
            await socket.ConnectAsync(url.Host, port, cancellationToken).ConfigureAwait(false);
            stream = new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        if (secure)
        {
            var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
            try
            {
                await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = url.Host, // SNI: platforms route by it
                    RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
                        CertificateTrust.Validate(certificate, errors, extraTrust),
                }, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            stream = ssl;
        }

        var connection = new RtmpConnection(stream, $"{url.Host}:{port}", time);
        var client = new RtmpPublishClient(connection);
        try
        {
            await client.PublishAsync(target, port, cancellationToken).ConfigureAwait(false);
            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task PublishAsync(PublishTarget target, int port, CancellationToken cancellationToken)
    {
        var url = target.ServerUrl;
        _streamName = target.StreamName;
        await _connection.ConnectHandshakeAsync(cancellationToken).ConfigureAwait(false);
        await _connection.SetOutChunkSizeAsync(RtmpConnection.DefaultOutChunkSize, cancellationToken).ConfigureAwait(false);
        var tcUrl = $"{url.Scheme}://{url.Host}:{port}/{target.App}";
        await SendAsync(new RtmpCommand("connect", 1, new AmfObject
        {
            { "app", target.App },
            { "type", "nonprivate" },
            { "flashVer", "FMLE/3.0 (compatible; Restream)" },
            { "tcUrl", tcUrl },
        }, []), 0, cancellationToken).ConfigureAwait(false);
        var connected = await WaitForResultAsync(1, cancellationToken).ConfigureAwait(false);
        if (connected.Name == "_error")
        {
            throw new DestinationRejectedException($"connect refused: {Describe(connected)}");
        }

        await SendAsync(new RtmpCommand("releaseStream", 2, null, [target.StreamName]), 0, cancellationToken).ConfigureAwait(false);
        await SendAsync(new RtmpCommand("FCPublish", 3, null, [target.StreamName]), 0, cancellationToken).ConfigureAwait(false);
        await SendAsync(new RtmpCommand("createStream", 4, null, []), 0, cancellationToken).ConfigureAwait(false);
        var created = await WaitForResultAsync(4, cancellationToken).ConfigureAwait(false);
        if (created.Name == "_error" || created.Arguments.Count == 0 || created.Arguments[0] is not double id)
        {
            throw new DestinationRejectedException($"createStream refused: {Describe(created)}");
        }

        _streamId = (uint)id;
        await SendAsync(new RtmpCommand("publish", 5, null, [target.StreamName, "live"]), _streamId, cancellationToken).ConfigureAwait(false);
        while (true)
        {
            var status = await ReadCommandAsync(cancellationToken).ConfigureAwait(false);
            if (status.Name != "onStatus")
            {
                continue;
            }

            var info = status.Arguments.Count > 0 ? status.Arguments[0] as AmfObject : null;
            var code = info?.GetString("code");
            if (code == RtmpStatus.PublishStart)
            {
                return;
            }

            if (info?.GetString("level") == "error")
            {
                throw new DestinationRejectedException($"publish refused: {code} {info.GetString("description")}".TrimEnd());
            }
        }
    }

    private static string Describe(RtmpCommand command)
    {
        var info = command.Arguments.Count > 0 ? command.Arguments[0] as AmfObject : null;
        return info is null ? command.Name : $"{info.GetString("code")} {info.GetString("description")}".Trim();
    }

    private ValueTask SendAsync(RtmpCommand command, uint streamId, CancellationToken cancellationToken) =>
        _connection.SendCommandAsync(command, streamId, cancellationToken);

    private async Task<RtmpCommand> WaitForResultAsync(double transactionId, CancellationToken cancellationToken)
    {
        while (true)
        {
            var command = await ReadCommandAsync(cancellationToken).ConfigureAwait(false);
            if (command.Name is "_result" or "_error" && command.TransactionId == transactionId)
            {
                return command;
            }
        }
    }

    private async Task<RtmpCommand> ReadCommandAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var (ok, message) = await _connection.ReadMessageAsync(cancellationToken).ConfigureAwait(false);
            if (!ok)
            {
                throw new IOException("the destination closed the connection");
            }

            using (message)
            {
                if (message.TypeId == RtmpMessageType.CommandAmf0)
                {
                    return RtmpCommand.Parse(message.Payload);
                }
            }
        }
    }

    /// <summary>
    /// Reads what the server sends while we publish (acknowledgements, pings, status). Ends with an
    /// exception when the server closes or reports an error.
    /// </summary>
    public async Task ReadUntilClosedAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var command = await ReadCommandAsync(cancellationToken).ConfigureAwait(false);
            if (command.Name == "onStatus" && command.Arguments.Count > 0 && command.Arguments[0] is AmfObject info
                && info.GetString("level") == "error")
            {
                throw new DestinationRejectedException($"{info.GetString("code")} {info.GetString("description")}".TrimEnd());
            }
        }
    }

    /// <summary>Sends one frame. Metadata goes as <c>@setDataFrame</c>, as encoders publish it.</summary>
    public async ValueTask SendFrameAsync(MediaFrame frame, CancellationToken cancellationToken)
    {
        if (frame.Kind == MediaKind.Data)
        {
            var body = ArrayPool<byte>.Shared.Rent(SetDataFrame.Length + frame.Length);
            try
            {
                SetDataFrame.CopyTo(body, 0);
                frame.Payload.Span.CopyTo(body.AsSpan(SetDataFrame.Length));
                await _connection.SendMessageAsync(RtmpChunkStreams.Data, RtmpMessageType.DataAmf0, frame.Timestamp, _streamId,
                    body.AsMemory(0, SetDataFrame.Length + frame.Length), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(body);
            }

            return;
        }

        await _connection.SendFrameAsync(frame, _streamId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends several audio/video frames with one write where the socket allows.</summary>
    public ValueTask SendFramesAsync(List<MediaFrame> frames, CancellationToken cancellationToken)
    {
        for (var i = 0; i < frames.Count; i++) // indexed: no enumerator to allocate
        {
            if (frames[i].Kind == MediaKind.Data)
            {
                return IPublishClient.SendEachAsync(this, frames, cancellationToken); // @setDataFrame goes alone
            }
        }

        return _connection.SendFramesAsync(frames, _streamId, cancellationToken);
    }

    /// <summary>Ends the publish politely (FCUnpublish, deleteStream) before closing.</summary>
    public async Task UnpublishAsync(string streamName, CancellationToken cancellationToken)
    {
        await SendAsync(new RtmpCommand("FCUnpublish", 6, null, [streamName]), 0, cancellationToken).ConfigureAwait(false);
        await SendAsync(new RtmpCommand("deleteStream", 7, null, [(double)_streamId]), 0, cancellationToken).ConfigureAwait(false);
    }

    public ValueTask DisposeAsync() => _connection.DisposeAsync();

    private static byte[] BuildSetDataFramePrefix()
    {
        var writer = new ArrayBufferWriter<byte>(16);
        AmfWriter.WriteString(writer, "@setDataFrame");
        return writer.WrittenSpan.ToArray();
    }
}

/// <summary>Certificate checks for rtmps:// destinations: the system store plus configured extra roots.</summary>
public static class CertificateTrust
{
    public static X509Certificate2Collection? Load(string? pemFile)
    {
        if (string.IsNullOrEmpty(pemFile))
        {
            return null;
        }

        var collection = new X509Certificate2Collection();
        collection.ImportFromPemFile(pemFile);
        return collection;
    }

    public static bool Validate(X509Certificate? certificate, SslPolicyErrors errors, X509Certificate2Collection? extraTrust)
    {
        if (errors == SslPolicyErrors.None)
        {
            return true;
        }

        // A wrong host name or a missing certificate is never excused by extra roots.
        if (extraTrust is null || certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch)
            || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(extraTrust);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = new X509Certificate2(certificate);
        return chain.Build(leaf);
    }
}
