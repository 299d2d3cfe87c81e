using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Restream.Ingest.Rtmp;
using Restream.IntegrationTests.Infrastructure;

namespace Restream.IntegrationTests;

public sealed class RtmpsIngestTests
{
    private static async Task<string> PresentedThumbprintAsync(int port)
    {
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", port);
        string? thumbprint = null;
        await using var ssl = new SslStream(client.GetStream(), false, (_, certificate, _, _) =>
        {
            thumbprint = certificate is null ? null : new X509Certificate2(certificate).Thumbprint;
            return true;
        });
        await ssl.AuthenticateAsClientAsync("localhost");
        return thumbprint!;
    }

    [Fact]
    public async Task Ffmpeg_publishes_over_rtmps_and_a_renewed_certificate_is_served_without_restart()
    {
        var certificate = await TestCertificate.CreateAsync();
        var tlsPort = TestPorts.GetFreeTcpPort();
        await using var server = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "secure",
            ["Restream:Channels:0:StreamKey"] = "secure_key_24681357",
            ["Restream:Rtmps:Port"] = tlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Restream:Rtmps:Address"] = "127.0.0.1",
            ["Restream:Rtmps:CertificateFile"] = certificate.CertificateFile,
            ["Restream:Rtmps:KeyFile"] = certificate.KeyFile,
        });

        // Ready means every listener is bound: the RTMPS one is named.
        using (var http = server.Http())
        {
            var ready = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("/readyz")).RootElement;
            Assert.Equal(($"127.0.0.1:{server.RtmpPort}", $"127.0.0.1:{tlsPort}"), (ready.GetProperty("rtmp").GetString(), ready.GetProperty("rtmps").GetString()));
        }

        await using (var publisher = Ffmpeg.Publish($"rtmps://127.0.0.1:{tlsPort}/live/secure_key_24681357", 6, size: "640x360", bitrateKbps: 800))
        {
            Assert.True(await TestPorts.EventuallyAsync(() => server.Streams.Find("secure") is { FramesIn: > 30 }, TimeSpan.FromSeconds(15)),
                publisher.Tail() + server.Log.Text);
            var streams = await Ffmpeg.ProbeAsync($"rtmp://127.0.0.1:{server.RtmpPort}/live/secure", TimeSpan.FromSeconds(30));
            var video = Assert.Single(streams, s => s.CodecType == "video");
            Assert.Equal(("h264", 640, 360), (video.CodecName, video.Width, video.Height));
            Assert.Equal(0, await publisher.WaitAsync(TimeSpan.FromSeconds(30)));
        }

        // Plain RTMP on the TLS port is a failed TLS handshake: closed, counted, nothing else disturbed.
        var errors = server.Counters.ProtocolErrors;
        using (var plain = new TcpClient())
        {
            await plain.ConnectAsync("127.0.0.1", tlsPort);
            await plain.GetStream().WriteAsync(new byte[1537]);
            var buffer = new byte[64];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                while (await plain.GetStream().ReadAsync(buffer, cts.Token) > 0)
                {
                }
            }
            catch (IOException)
            {
            }
        }

        Assert.True(await TestPorts.EventuallyAsync(() => server.Counters.ProtocolErrors > errors, TimeSpan.FromSeconds(5)));

        // Renew the certificate in place: new connections get the new one.
        var before = await PresentedThumbprintAsync(tlsPort);
        var renewed = await TestCertificate.CreateAsync();
        File.Copy(renewed.KeyFile, certificate.KeyFile, overwrite: true);
        File.Copy(renewed.CertificateFile, certificate.CertificateFile, overwrite: true);
        File.SetLastWriteTimeUtc(certificate.CertificateFile, DateTime.UtcNow.AddSeconds(5));
        string after = before;
        Assert.True(await TestPorts.EventuallyAsync(() =>
        {
            after = PresentedThumbprintAsync(tlsPort).GetAwaiter().GetResult();
            return after != before;
        }, TimeSpan.FromSeconds(10), intervalMs: 300), "the renewed certificate was not served");
        Assert.Equal(X509Certificate2.CreateFromPemFile(renewed.CertificateFile, renewed.KeyFile).Thumbprint, after);
        Assert.Contains(server.Log.Lines, l => l.Contains("RTMPS certificate reloaded"));
    }
}
