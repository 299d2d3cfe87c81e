using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Restream.Bench;

/// <summary>
/// SRT ingest side by side with srt-live-transmit on the same feed: ffmpeg sends the benchmark FLV as
/// MPEG-TS over SRT in real time; Restream demuxes it and relays it to one RTMP destination, while
/// srt-live-transmit (Debian's srt-tools) receives it and forwards the TS to UDP. CPU seconds per
/// minute of each process, over the same window after a warm-up.
/// </summary>
public static class SrtBenchmark
{
    public static async Task<int> RunAsync(string repoRoot, int seconds)
    {
        var resultsDir = Path.Combine(repoRoot, "bench", "results");
        Directory.CreateDirectory(resultsDir);
        var input = await RelayBenchmark.EnsureInputAsync(resultsDir);
        var server = Path.Combine(repoRoot, "src", "Restream.Server", "bin", "Release", "net10.0", "restream.dll");

        // Restream: SRT in, one RTMP destination out (a sink that reads and discards).
        await using var sink = new RelayBenchmark.SinkServer();
        var rtmpPort = RelayBenchmark.FreePort();
        var srtPort = FreeUdpPort();
        double ours;
        await using (var relay = RelayBenchmark.RelayProcess.Start("dotnet",
        [
            server, $"--Restream:Rtmp:Port={rtmpPort}", "--Restream:Rtmp:Address=127.0.0.1", "--urls=http://127.0.0.1:0",
            "--Restream:Srt:Enabled=true", $"--Restream:Srt:Port={srtPort}", "--Restream:Srt:Address=127.0.0.1",
            "--Restream:Channels:0:Name=bench", "--Restream:Channels:0:StreamKey=benchkey-123456",
            $"--Restream:Channels:0:Destinations:0:Url=rtmp://127.0.0.1:{sink.Port}/sink", "--Restream:Channels:0:Destinations:0:Key=d0",
            "--Logging:LogLevel:Default=Warning", $"--Restream:Database=Data Source={Path.Combine(resultsDir, "srt-bench.db")}",
        ], dir: null))
        {
            await RelayBenchmark.WaitForPortAsync(rtmpPort);
            ours = await MeasureAsync(relay, input, $"srt://127.0.0.1:{srtPort}?streamid=publish:benchkey-123456&latency=200000", seconds);
        }

        // srt-live-transmit: SRT in, UDP out.
        var peerPort = FreeUdpPort();
        var udpOut = FreeUdpPort();
        double theirs;
        await using (var peer = RelayBenchmark.RelayProcess.Start("srt-live-transmit",
            ["-q", $"srt://127.0.0.1:{peerPort}?mode=listener&latency=200", $"udp://127.0.0.1:{udpOut}"], dir: "quiet"))
        {
            await Task.Delay(500);
            theirs = await MeasureAsync(peer, input, $"srt://127.0.0.1:{peerPort}?latency=200000", seconds);
        }

        var table = string.Join('\n',
        [
            $"SRT ingest benchmark, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, {seconds} s window, input 720p30 ~3 Mb/s",
            "",
            "| process | work | CPU s/min |",
            "|---|---|---|",
            $"| restream | SRT in, TS demux, RTMP relay to 1 destination | {ours:0.000} |",
            $"| srt-live-transmit | SRT in, TS forwarded to UDP as is | {theirs:0.000} |",
            $"| **ratio restream/srt-live-transmit** | | {ours / theirs:0.00}× |",
        ]);
        Console.WriteLine(table);
        await File.WriteAllTextAsync(Path.Combine(resultsDir, "srt.md"), table + "\n");
        return 0;
    }

    private static async Task<double> MeasureAsync(RelayBenchmark.RelayProcess process, string input, string url, int seconds)
    {
        var info = new ProcessStartInfo("ffmpeg") { RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", input, "-c", "copy", "-f", "mpegts", url })
        {
            info.ArgumentList.Add(a);
        }

        using var sender = Process.Start(info)!;
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(10)); // warm-up
            var before = process.Sample();
            var clock = Stopwatch.StartNew();
            await Task.Delay(TimeSpan.FromSeconds(seconds));
            var after = process.Sample();
            return (after.Cpu - before.Cpu) / clock.Elapsed.TotalMinutes;
        }
        finally
        {
            sender.Kill();
            await sender.WaitForExitAsync();
        }
    }

    private static int FreeUdpPort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
