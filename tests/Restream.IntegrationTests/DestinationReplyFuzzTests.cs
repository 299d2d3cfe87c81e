using System.Net;
using System.Net.Sockets;
using Restream.Media.Amf;
using Restream.Media.Rtmp;
using Restream.Relay;
using Restream.Tests;

namespace Restream.IntegrationTests;

/// <summary>
/// A destination that answers our publish with damaged replies: nginx-rtmp's real answer to a publish
/// (captured, Restream.Media.Tests/Fixtures/nginx-publish.s2c.bin), with bits flipped, lengths
/// overwritten, ranges cut or copied. Our RTMP client must get live or fail with one of the errors a
/// destination's pusher reports and retries after; anything else would end that destination's
/// pusher for good, without a word.
/// </summary>
public sealed class DestinationReplyFuzzTests
{
    private static readonly byte[] Replies = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", "nginx-publish.s2c.bin"));

    [Fact]
    public async Task Damaged_server_replies_end_in_live_or_an_error_the_pusher_retries_after()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var target = new PublishTarget(new Uri($"rtmp://127.0.0.1:{port}/live"), "fuzzed-key");
        var random = new Random(17);
        var outcomes = new Dictionary<string, int>();
        for (var i = 0; i < 150; i++)
        {
            // Half the damage lands in the first 3 KB after the 3 073-byte handshake: the control messages and _results.
            var (replies, what) = ByteMutator.Mutate(Replies, random, head: 6144);
            var server = ServeOnceAsync(listener, replies);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            string outcome;
            try
            {
                await using var client = await RtmpPublishClient.ConnectAsync(target, null, TimeProvider.System, timeout.Token);
                outcome = "live";
            }
            catch (Exception e) when (e is DestinationRejectedException || DestinationPusher.IsConnectionFailure(e))
            {
                outcome = e.GetType().Name;
            }
            catch (Exception e)
            {
                Assert.Fail($"mutation {i} ({what}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                throw;
            }

            await server;
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }

        // The damage reached our client both ways.
        var summary = string.Join(", ", outcomes);
        Assert.True(outcomes.GetValueOrDefault("live") > 0, summary);
        Assert.True(outcomes.GetValueOrDefault(nameof(RtmpProtocolException)) + outcomes.GetValueOrDefault(nameof(AmfException)) > 0, summary);
    }

    /// <summary>Takes one connection, reads C0 C1, sends the replies, then reads what comes until the client goes or 1 s passes.</summary>
    private static async Task ServeOnceAsync(TcpListener listener, byte[] replies)
    {
        using var socket = await listener.AcceptSocketAsync();
        using var stream = new NetworkStream(socket);
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        var buffer = new byte[8192];
        try
        {
            await stream.ReadExactlyAsync(buffer.AsMemory(0, 1 + 1536), patience.Token);
            await stream.WriteAsync(replies, patience.Token);
            while (await stream.ReadAsync(buffer, patience.Token) > 0)
            {
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or EndOfStreamException)
        {
            // The client gave up first, or is waiting for more.
        }
    }
}
