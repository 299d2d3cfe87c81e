using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Restream.Ingest.Rtmp;
using Restream.Media;
using Restream.Media.Amf;
using Restream.Media.Flv;
using Restream.Media.Rtmp;
using Restream.Relay;

namespace Restream.Bench;

/// <summary>
/// Our relay and nginx-rtmp's <c>push</c> side by side on the same feed: a synthetic publisher sends a
/// real 720p30 3 Mb/s H.264 + AAC FLV at real-time pace, stamping a sequence number into every video
/// frame; sink servers in this process receive every destination's copy and time its arrival.
/// Each relay runs as its own process so its CPU time and memory can be read from /proc.
/// </summary>
public static class RelayBenchmark
{
    public static async Task<int> RunAsync(string repoRoot, int seconds, int[] fanouts)
    {
        var resultsDir = Path.Combine(repoRoot, "bench", "results");
        Directory.CreateDirectory(resultsDir);
        var only = Environment.GetEnvironmentVariable("RESTREAM_BENCH_ONLY");
        var peers = new List<string> { "ffmpeg" };
        if (only is null || only.Split(',').Any(v => v is "nginx-rtmp" or "nginx-rtmp-nodelay"))
        {
            peers.Add("nginx");
        }

        if (only is null || only.Split(',').Any(v => v is "floor" or "floor-unmerged" or "nginx-rtmp-nodelay"))
        {
            peers.Add("cc");
        }

        var missing = peers.Where(p => !OnPath(p)).ToList();
        if (missing.Count > 0)
        {
            Console.Error.WriteLine($"the relay bench needs {string.Join(", ", missing)} on PATH: install ffmpeg, nginx, libnginx-mod-rtmp and gcc " +
                "(bash scripts/test.sh installs all but gcc)");
            return 1;
        }

        var input = await EnsureInputAsync(resultsDir);
        var frames = LoadFlv(input);
        Console.WriteLine($"input: {input} ({frames.Count} tags, {frames.Count(f => f.Kind == MediaKind.Video)} video frames)");
        var server = Path.Combine(repoRoot, "src", "Restream.Server", "bin", "Release", "net10.0", "restream.dll");
        if (!File.Exists(server))
        {
            Console.Error.WriteLine($"build the server first: dotnet build -c Release src/Restream.Server ({server} missing)");
            return 1;
        }

        // RESTREAM_BENCH_ONLY=restream,nginx-rtmp (any of restream, restream-budget, restream-unmerged, nginx-rtmp, nginx-rtmp-nodelay, floor,
        // floor-unmerged, floor-cs, floor-rtmp, floor-rtmp-merged, floor-rtmp-budget, baseline, baseline-budget) measures only those;
        // the ratio needs restream and nginx-rtmp.
        var rows = new List<string>();
        foreach (var fanout in fanouts)
        {
            var variants = new List<(string Key, string Name, Func<int, int, Task<RelayProcess>> Start)>
            {
                ("restream", "restream", (ingestPort, sinkPort) => StartRestream(server, ingestPort, sinkPort, fanout, merged: true)),
                // Merged under a 15 ms latency budget: no frame waits longer for another one.
                ("restream-budget", $"restream, {BudgetMs("RESTREAM_BENCH_BUDGET_MS")} ms budget", (ingestPort, sinkPort) => StartRestream(server, ingestPort, sinkPort, fanout, merged: true, budget: BudgetMs("RESTREAM_BENCH_BUDGET_MS"))),
                // Every frame read and sent the moment it arrives: the latency-first setting.
                ("restream-unmerged", "restream, merging off", (ingestPort, sinkPort) => StartRestream(server, ingestPort, sinkPort, fanout, merged: false)),
                ("nginx-rtmp", "nginx-rtmp", (ingestPort, sinkPort) => StartNginx(repoRoot, resultsDir, ingestPort, sinkPort, fanout, nodelay: false)),
                // nginx-rtmp with TCP_NODELAY on its push connections (bench/nodelay.c, preloaded): it sends
                // each write at once, as a relay under a latency target must, and pays for its own sends.
                ("nginx-rtmp-nodelay", "nginx-rtmp, TCP_NODELAY", (ingestPort, sinkPort) => StartNginx(repoRoot, resultsDir, ingestPort, sinkPort, fanout, nodelay: true)),
            };
            // The floor: a C forwarder that makes a relay's system calls and nothing else (bench/floor-relay.c),
            // merged like our defaults (a 10 ms mark at 3 Mb/s, 40 ms at most) and frame by frame, to as many sinks.
            variants.Add(("floor", "floor (C forwarder, merged reads)", (ingestPort, sinkPort) => StartFloor(repoRoot, resultsDir, ingestPort, sinkPort, lowat: 3750, waitMs: 40, fanout)));
            variants.Add(("floor-unmerged", "floor (C forwarder, every frame)", (ingestPort, sinkPort) => StartFloor(repoRoot, resultsDir, ingestPort, sinkPort, lowat: 1, waitMs: -1, fanout)));
            // The same forwarder in C# under the server's runtime settings: what .NET alone adds to a wake-up;
            // and the C# forwarder doing the RTMP work no relay can skip (parse, re-chunk), with our parser and writer.
            variants.Add(("floor-cs", "floor (C# forwarder, every frame)", (ingestPort, sinkPort) => StartFloorCs(ingestPort, sinkPort, lowat: 1, waitMs: -1, fanout, rtmp: false)));
            variants.Add(("floor-rtmp", "floor (C# RTMP re-chunker, every frame)", (ingestPort, sinkPort) => StartFloorCs(ingestPort, sinkPort, lowat: 1, waitMs: -1, fanout, rtmp: true)));
            variants.Add(("floor-rtmp-merged", "floor (C# RTMP re-chunker, merged reads)", (ingestPort, sinkPort) => StartFloorCs(ingestPort, sinkPort, lowat: 3750, waitMs: 40, fanout, rtmp: true)));
            // The re-chunker paced by the server's planner under the same budget: our budget's writes at the floor's cost.
            variants.Add(("floor-rtmp-budget", $"floor (C# RTMP re-chunker, {BudgetMs("RESTREAM_BENCH_BUDGET_MS")} ms budget)", (ingestPort, sinkPort) =>
                StartFloorCs(ingestPort, sinkPort, lowat: 3750, waitMs: 40, fanout, rtmp: true, budget: BudgetMs("RESTREAM_BENCH_BUDGET_MS"))));

            // RESTREAM_BENCH_BASELINE=/path/to/restream.dll (a copy of an earlier build's output): the
            // same defaults and budget runs of that build, alternated with this one, for A/B figures.
            // RESTREAM_BENCH_BASELINE_ENV="DOTNET_TieredCompilation=0 ..." sets runtime knobs for the
            // baseline's process only (the baseline may be this build, to A/B a knob).
            if (Environment.GetEnvironmentVariable("RESTREAM_BENCH_BASELINE") is { Length: > 0 } baseline)
            {
                var knobs = (Environment.GetEnvironmentVariable("RESTREAM_BENCH_BASELINE_ENV") ?? string.Empty)
                    .Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(kv => kv.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : string.Empty);
                variants.Add(("baseline", "baseline build", (ingestPort, sinkPort) => StartRestream(baseline, ingestPort, sinkPort, fanout, merged: true, env: knobs)));
                variants.Add(("baseline-budget", $"baseline build, {BudgetMs("RESTREAM_BENCH_BASELINE_BUDGET_MS")} ms budget", (ingestPort, sinkPort) => StartRestream(baseline, ingestPort, sinkPort, fanout, merged: true, budget: BudgetMs("RESTREAM_BENCH_BASELINE_BUDGET_MS"), env: knobs)));
            }

            variants.RemoveAll(v => only is not null && !only.Split(',').Contains(v.Key));

            // Rounds alternate the relays (each round starts one later), so a slow minute of a shared
            // machine lands on all of them; each relay's median run is reported.
            var runs = variants.ToDictionary(v => v.Key, _ => new List<Result>());
            for (var round = 0; round < Rounds; round++)
            {
                if (Together)
                {
                    // All relays at once, each with its own publisher and sinks, measured over the same
                    // window: what slows the machine slows them alike, and their ratio keeps still.
                    var together = await Task.WhenAll(variants.Select(v => MeasureAsync(v.Name, fanout, seconds, frames, v.Start)));
                    for (var i = 0; i < variants.Count; i++)
                    {
                        Report(together[i]);
                        runs[variants[i].Key].Add(together[i]);
                    }

                    continue;
                }

                for (var i = 0; i < variants.Count; i++)
                {
                    var (key, name, start) = variants[(i + round) % variants.Count];
                    var run = await MeasureAsync(name, fanout, seconds, frames, start);
                    Report(run);
                    runs[key].Add(run);
                }
            }

            var medians = runs.ToDictionary(r => r.Key, r => Median(r.Value));
            foreach (var (key, _, _) in variants)
            {
                rows.Add(medians[key].Row(runs[key]));
            }

            string[] relays = ["restream", "restream-budget", "baseline", "baseline-budget", "floor", "floor-unmerged", "floor-cs", "floor-rtmp", "floor-rtmp-merged", "floor-rtmp-budget"];
            (string Peer, string Label, string[] Keys)[] comparisons =
            [
                ("nginx-rtmp", "nginx", relays),
                ("nginx-rtmp-nodelay", "nginx-nodelay", relays),
                ("baseline", "baseline", ["restream"]), // an A/B: this build against the one before, same settings
                ("baseline-budget", "baseline-budget", ["restream-budget"]),
                // How far the server is from the floor that paces its writes the same way: what a leaner
                // path from publisher to destination could still save.
                ("floor-rtmp-budget", "floor-rtmp-budget", ["restream-budget", "baseline-budget"]),
            ];
            foreach (var (peer, label, keys) in comparisons)
            {
                foreach (var key in keys)
                {
                    if (medians.TryGetValue(key, out var ours) && medians.TryGetValue(peer, out var other))
                    {
                        rows.Add($"| {fanout} | **ratio {key}/{label}** | {ours.CpuPerMinutePerDestination / other.CpuPerMinutePerDestination:0.00}×{PairedRatios(runs[key], runs[peer])} | " +
                                 (Together ? "relay + peers: not measured together | " : $"relay + peers {(ours.CpuPerMinutePerDestination + ours.PeersCpuPerMinutePerDestination) / (other.CpuPerMinutePerDestination + other.PeersCpuPerMinutePerDestination):0.00}× | ") +
                                 $"{(double)ours.RssMb / other.RssMb:0.00}× | " +
                                 $"{ours.P50 / other.P50:0.00}× | {ours.P99 / other.P99:0.00}× | {ours.AudioP50 / other.AudioP50:0.00}× | {ours.AudioP99 / other.AudioP99:0.00}× | | |");
                    }
                }
            }
        }

        var table = string.Join('\n',
        [
            $"Relay benchmark, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, {seconds} s per run, " +
            $"{Rounds} round(s) (median run shown, CPU range in brackets, frames counted over all runs), input 720p30 ~3 Mb/s" +
            (Together ? "; the relays of a round ran together, sharing the cores" : ""),
            "",
            "| destinations | relay | CPU s/min/destination | peers' CPU s/min/destination | RSS MB | video hop p50 ms | video hop p99 ms | audio hop p50 ms | audio hop p99 ms | video frames received/expected | audio frames received/expected |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            .. rows,
        ]);
        Console.WriteLine();
        Console.WriteLine(table);
        await File.WriteAllTextAsync(Path.Combine(resultsDir, "relay.md"), table + "\n");
        return 0;
    }

    /// <summary>
    /// Seconds of streaming before the measured window (RESTREAM_BENCH_WARMUP, default 30): past
    /// start-up and most of the runtime's tiered re-compilation, which goes on in a thin tail for minutes.
    /// </summary>
    private static int WarmupSeconds =>
        int.TryParse(Environment.GetEnvironmentVariable("RESTREAM_BENCH_WARMUP"), out var s) && s >= 0 ? s : 30;

    /// <summary>
    /// RESTREAM_BENCH_TOGETHER=1: each round runs every relay at the same time, over the same window,
    /// instead of one after another. For an A/B of two builds: this VM's speed moves by up to 1.5×
    /// between runs minutes apart, which a paired ratio of runs taken together cancels. The relays
    /// share the two cores (hop latencies are not comparable with a run alone), and the peers' CPU is
    /// this whole process, so it is not reported per relay.
    /// </summary>
    private static bool Together => Environment.GetEnvironmentVariable("RESTREAM_BENCH_TOGETHER") == "1";

    private static void Report(Result run) =>
        Console.WriteLine(FormattableString.Invariant($"   {run.Relay}: {run.CpuPerMinutePerDestination:0.000} CPU s/min/destination, hop p99 video {run.P99:0.00} ms, audio {run.AudioP99:0.00} ms"));

    /// <summary>Runs of each relay at each fan-out (RESTREAM_BENCH_ROUNDS, default 1); the median is reported.</summary>
    private static int Rounds =>
        int.TryParse(Environment.GetEnvironmentVariable("RESTREAM_BENCH_ROUNDS"), out var n) && n >= 1 ? n : 1;

    private static Result Median(List<Result> runs) =>
        runs.OrderBy(r => r.CpuPerMinutePerDestination).ElementAt((runs.Count - 1) / 2);

    /// <summary>
    /// With two rounds or more: the ratio of the two relays' CPU within each round (runs of one round
    /// are minutes apart, rounds a quarter of an hour or more), as "(paired: median [least–most])". On a
    /// shared VM a relay's own runs can differ by a third; a slow stretch that falls on both runs of a
    /// round leaves their ratio alone. A peer that switches regimes (nginx-rtmp with and without its
    /// Nagle stalls) still spreads it.
    /// </summary>
    private static string PairedRatios(List<Result> ours, List<Result> peer)
    {
        var rounds = Math.Min(ours.Count, peer.Count);
        if (rounds < 2)
        {
            return "";
        }

        var ratios = Enumerable.Range(0, rounds).Select(i => ours[i].CpuPerMinutePerDestination / peer[i].CpuPerMinutePerDestination).Order().ToList();
        var median = rounds % 2 == 1 ? ratios[rounds / 2] : (ratios[rounds / 2 - 1] + ratios[rounds / 2]) / 2;
        return $" (paired: {median:0.00}× [{ratios[0]:0.00}–{ratios[^1]:0.00}])";
    }

    /// <summary>Audio frames carry AudioBase + their number, video frames their number alone.</summary>
    private const long AudioBase = 1L << 40;

    private sealed record Result(string Relay, int Fanout, double CpuPerMinutePerDestination, double PeersCpuPerMinutePerDestination, long RssMb, double P50, double P99,
        double AudioP50, double AudioP99, long Received, long Expected, long AudioReceived, long AudioExpected)
    {
        public string Row(IReadOnlyList<Result> runs) =>
            $"| {Fanout} | {Relay} | {CpuPerMinutePerDestination:0.000}{Range(runs)} | {(double.IsNaN(PeersCpuPerMinutePerDestination) ? "–" : PeersCpuPerMinutePerDestination.ToString("0.000", CultureInfo.InvariantCulture))} | {RssMb} | {P50:0.00} | {P99:0.00} | " +
            $"{AudioP50:0.00} | {AudioP99:0.00} | {runs.Sum(r => r.Received)}/{runs.Sum(r => r.Expected)} | " +
            $"{runs.Sum(r => r.AudioReceived)}/{runs.Sum(r => r.AudioExpected)} |"; // frames: every run counts

        private static string Range(IReadOnlyList<Result> runs) => runs.Count < 2
            ? ""
            : $" [{runs.Min(r => r.CpuPerMinutePerDestination):0.000}–{runs.Max(r => r.CpuPerMinutePerDestination):0.000}]";
    }

    private static async Task<Result> MeasureAsync(string name, int fanout, int seconds, List<MediaFrame> frames,
        Func<int, int, Task<RelayProcess>> start)
    {
        Console.WriteLine($"== {name}, {fanout} destination(s)");
        var ingestPort = FreePort();
        await using var sink = new SinkServer();
        await using var relay = await start(ingestPort, sink.Port);
        await WaitForPortAsync(ingestPort, relay);

        var sent = new ConcurrentDictionary<long, long>();
        // The relay's peers: this process (the publisher and every destination's sink). A relay whose
        // writes wait for the receiver's ACK (Nagle) has their kernel work run, and charged, here.
        using var peers = new ThreadClock(() => [Environment.ProcessId]);
        double peersBefore = 0, peersAfter = 0;
        var publisher = await RtmpPublishClient.ConnectAsync(
            new PublishTarget(new Uri($"rtmp://127.0.0.1:{ingestPort}/live"), "benchkey-123456"), null, TimeProvider.System, CancellationToken.None);
        await using (publisher)
        {
            _ = publisher.ReadUntilClosedAsync(CancellationToken.None).ContinueWith(_ => { }, TaskScheduler.Default);
            var clock = Stopwatch.StartNew();
            var warmup = TimeSpan.FromSeconds(WarmupSeconds);
            (double Cpu, long Rss)? before = null;
            long sequence = 0;
            long audioSequence = 0;
            long firstVideo = 1, firstAudio = 1;
            var index = 0;
            var loopOffset = 0u;
            var lastTs = 0u;
            (double Cpu, long Rss)? after = null;
            var end = TimeSpan.FromSeconds(seconds) + warmup;
            var tail = TimeSpan.FromMilliseconds(500); // the stream goes on a little: frames a relay holds for merging go out
            while (clock.Elapsed < end + tail)
            {
                var frame = frames[index];
                var ts = frame.Timestamp + loopOffset;
                var due = TimeSpan.FromMilliseconds(ts);
                var wait = due - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait);
                }

                if (before is null && clock.Elapsed >= warmup)
                {
                    before = relay.Sample();
                    peersBefore = peers.Read();
                    sink.StartCounting();
                    // Numbers keep counting: a frame sent before the window (an audio frame a relay
                    // held) must not pass for one sent inside it.
                    firstVideo = sequence + 1;
                    firstAudio = audioSequence + 1;
                    sent.Clear();
                }

                if (after is null && clock.Elapsed >= end)
                {
                    after = relay.Sample();
                    peersAfter = peers.Read();
                }

                var copy = frame.Payload.ToArray();
                if (after is not null)
                {
                    // the tail: not counted
                }
                else if (frame.Kind == MediaKind.Video && !frame.IsSequenceHeader && copy.Length >= 13)
                {
                    // The relays never look inside NAL units: a sequence number there identifies the frame.
                    BinaryPrimitives.WriteInt64BigEndian(copy.AsSpan(5), ++sequence);
                    sent[sequence] = Stopwatch.GetTimestamp();
                }
                else if (frame.Kind == MediaKind.Audio && !frame.IsSequenceHeader && copy.Length >= 10)
                {
                    // Nor inside AAC frames: audio numbers are counted apart (AudioBase + n).
                    BinaryPrimitives.WriteInt64BigEndian(copy.AsSpan(2), AudioBase + ++audioSequence);
                    sent[AudioBase + audioSequence] = Stopwatch.GetTimestamp();
                }

                using var outgoing = new FrameOwner(MediaFrame.Copy(frame.Kind, ts, copy));
                await publisher.SendFrameAsync(outgoing.Frame, CancellationToken.None);
                lastTs = ts;
                if (++index == frames.Count)
                {
                    index = 1; // skip the metadata; sequence headers repeat harmlessly
                    loopOffset = lastTs + 33;
                }
            }

            var window = end - warmup;
            await Task.Delay(300); // let the last frames land
            var cpu = after!.Value.Cpu - before!.Value.Cpu;
            var latencies = sink.Latencies(sent, audio: false);
            latencies.Sort();
            var audioLatencies = sink.Latencies(sent, audio: true);
            audioLatencies.Sort();
            var expected = (sequence - firstVideo + 1) * fanout;
            return new Result(name, fanout, cpu / window.TotalMinutes / fanout, Together ? double.NaN : (peersAfter - peersBefore) / window.TotalMinutes / fanout,
                Math.Max(after.Value.Rss, before.Value.Rss) / (1024 * 1024),
                Percentile(latencies, 0.50), Percentile(latencies, 0.99), Percentile(audioLatencies, 0.50), Percentile(audioLatencies, 0.99),
                latencies.Count, expected, audioLatencies.Count, (audioSequence - firstAudio + 1) * fanout);
        }
    }

    private sealed class FrameOwner(MediaFrame frame) : IDisposable
    {
        public MediaFrame Frame { get; } = frame;
        public void Dispose() => Frame.Release();
    }

    /// <summary>The budget runs' latency budget in ms: 15, or the named variable's value (for A/B of the budget itself).</summary>
    private static int BudgetMs(string variable) =>
        int.TryParse(Environment.GetEnvironmentVariable(variable), NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) && ms > 0 ? ms : 15;

    private static double Percentile(List<double> sorted, double p) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)(p * sorted.Count))];

    private static async Task<RelayProcess> StartRestream(string server, int ingestPort, int sinkPort, int fanout, bool merged, int budget = 0,
        IReadOnlyDictionary<string, string>? env = null)
    {
        var args = new List<string>
        {
            server, $"--Restream:Rtmp:Port={ingestPort}", "--Restream:Rtmp:Address=127.0.0.1", "--urls=http://127.0.0.1:0",
            "--Restream:Channels:0:Name=bench", "--Restream:Channels:0:StreamKey=benchkey-123456",
            "--Logging:LogLevel:Default=Warning",
        };
        if (budget > 0)
        {
            args.Add($"--Restream:Rtmp:LatencyBudget={TimeSpan.FromMilliseconds(budget):c}");
        }

        if (!merged)
        {
            args.AddRange(["--Restream:Rtmp:MergedRead=00:00:00", "--Restream:Relay:AudioMergeWindow=00:00:00"]);
        }

        // Extra server settings for experiments, space-separated: RESTREAM_BENCH_ARGS="--Restream:Rtmp:MergedRead=00:00:00.040".
        args.AddRange((Environment.GetEnvironmentVariable("RESTREAM_BENCH_ARGS") ?? string.Empty).Split(' ', StringSplitOptions.RemoveEmptyEntries));
        for (var i = 0; i < fanout; i++)
        {
            args.Add($"--Restream:Channels:0:Destinations:{i}:Url=rtmp://127.0.0.1:{sinkPort}/sink");
            args.Add($"--Restream:Channels:0:Destinations:{i}:Key=d{i}");
        }

        var process = RelayProcess.Start("dotnet", args, dir: null, WithServerRuntime(env));
        await Task.CompletedTask;
        return process;
    }

    /// <summary>
    /// The runtime settings the server command (<c>scripts/run.sh</c>) starts the server with, under
    /// <paramref name="env"/> (which may override them): no ReadyToRun code, every method compiled
    /// optimized by the JIT (the server's project turns tiered compilation off).
    /// </summary>
    private static Dictionary<string, string> WithServerRuntime(IReadOnlyDictionary<string, string>? env)
    {
        var settings = new Dictionary<string, string> { ["DOTNET_ReadyToRun"] = "0" };
        foreach (var (name, value) in env ?? new Dictionary<string, string>())
        {
            settings[name] = value;
        }

        return settings;
    }

    private static Task<RelayProcess> StartFloorCs(int ingestPort, int sinkPort, int lowat, int waitMs, int sinks, bool rtmp, int budget = 0) =>
        Task.FromResult(RelayProcess.Start("dotnet",
            [typeof(FloorRelay).Assembly.Location, "floor-relay", .. new[] { ingestPort, sinkPort, lowat, waitMs, sinks }.Select(n => n.ToString(CultureInfo.InvariantCulture)),
             .. budget > 0 ? ["rtmp-budget", budget.ToString(CultureInfo.InvariantCulture)] : new[] { rtmp ? "rtmp" : "bytes" }],
            dir: null, WithServerRuntime(new Dictionary<string, string> { ["DOTNET_TieredCompilation"] = "0", ["DOTNET_gcServer"] = "0", ["DOTNET_gcConcurrent"] = "0" })));

    /// <summary>Builds <c>bench/SOURCE</c> into the results folder with <c>cc</c> when it is missing or older than its source.</summary>
    private static async Task<string> CompileAsync(string repoRoot, string resultsDir, string source, string output, string[] flags, string[] libraries)
    {
        var path = Path.Combine(resultsDir, output);
        var sourcePath = Path.Combine(repoRoot, "bench", source);
        if (!File.Exists(path) || File.GetLastWriteTimeUtc(path) < File.GetLastWriteTimeUtc(sourcePath))
        {
            var compile = Process.Start(new ProcessStartInfo("cc", ["-O2", .. flags, "-o", path, sourcePath, .. libraries]))!;
            await compile.WaitForExitAsync();
            if (compile.ExitCode != 0)
            {
                throw new InvalidOperationException($"cc could not build bench/{source}");
            }
        }

        return path;
    }

    private static async Task<RelayProcess> StartFloor(string repoRoot, string resultsDir, int ingestPort, int sinkPort, int lowat, int waitMs, int sinks)
    {
        var binary = await CompileAsync(repoRoot, resultsDir, "floor-relay.c", "floor-relay", [], []);
        return RelayProcess.Start(binary, [ingestPort.ToString(CultureInfo.InvariantCulture), sinkPort.ToString(CultureInfo.InvariantCulture),
            lowat.ToString(CultureInfo.InvariantCulture), waitMs.ToString(CultureInfo.InvariantCulture), sinks.ToString(CultureInfo.InvariantCulture)], dir: null);
    }

    private static async Task<RelayProcess> StartNginx(string repoRoot, string resultsDir, int ingestPort, int sinkPort, int fanout, bool nodelay)
    {
        var env = new Dictionary<string, string>();
        if (nodelay)
        {
            env["LD_PRELOAD"] = await CompileAsync(repoRoot, resultsDir, "nodelay.c", "nodelay.so", ["-shared", "-fPIC"], ["-ldl"]);
        }

        var dir = Path.Combine(resultsDir, $"nginx-{ingestPort}");
        Directory.CreateDirectory(dir);
        var pushes = string.Join("\n", Enumerable.Range(0, fanout).Select(i => $"      push rtmp://127.0.0.1:{sinkPort}/sink/d{i};"));
        await File.WriteAllTextAsync(Path.Combine(dir, "nginx.conf"), $$"""
            load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
            {{(Environment.UserName == "root" ? "user root;" : "")}}
            worker_processes 1;
            pid {{dir}}/nginx.pid;
            error_log {{dir}}/error.log info;
            events { worker_connections 1024; }
            rtmp { server {
              listen 127.0.0.1:{{ingestPort}};
              chunk_size 4096;
              application live {
                live on;
            {{pushes}}
              }
            } }
            """);
        return RelayProcess.Start("nginx", ["-p", dir, "-c", Path.Combine(dir, "nginx.conf"), "-e", Path.Combine(dir, "stderr.log"), "-g", "daemon off;"], dir, env);
    }

    internal static async Task<string> EnsureInputAsync(string dir)
    {
        var path = Path.Combine(dir, "input-720p30-3M.flv");
        if (File.Exists(path))
        {
            return path;
        }

        Console.WriteLine("encoding the input (20 s of 720p30 at 3 Mb/s) with ffmpeg…");
        var info = new ProcessStartInfo("ffmpeg") { RedirectStandardError = true };
        foreach (var a in new[]
        {
            "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "20",
            "-c:v", "libx264", "-preset", "veryfast", "-b:v", "3M", "-maxrate", "3M", "-bufsize", "3M", "-g", "60",
            "-c:a", "aac", "-b:a", "128k", "-f", "flv", path,
        })
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException("ffmpeg failed: " + await process.StandardError.ReadToEndAsync());
        }

        return path;
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, program)));

    private static List<MediaFrame> LoadFlv(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(bytes));
        FlvReader.TryReadFileHeader(ref reader, out _, out _);
        var frames = new List<MediaFrame>();
        while (FlvReader.TryReadTag(ref reader, out var header, out var body))
        {
            if (header.Type is FlvTagType.Audio or FlvTagType.Video)
            {
                frames.Add(MediaFrame.Copy((MediaKind)header.Type, header.Timestamp, body.ToArray()));
            }
        }

        return frames;
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// Waits until something listens on <paramref name="port"/>: up to a minute, since relays started
    /// together compile their code at once on a small machine (two servers took over 10 s here), and
    /// no longer than <paramref name="relay"/> lives: one that exits says so, with its last output.
    /// </summary>
    internal static async Task WaitForPortAsync(int port, RelayProcess? relay = null)
    {
        var limit = TimeSpan.FromSeconds(60);
        var started = Stopwatch.StartNew();
        while (started.Elapsed < limit)
        {
            if (relay is { HasExited: true })
            {
                throw new InvalidOperationException($"the relay exited before it listened on {port}: {relay.Describe()}");
            }

            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }

        throw new TimeoutException($"nothing listens on {port} after {limit.TotalSeconds:0} s{(relay is null ? "" : $": {relay.Describe()}")}");
    }

    /// <summary>A relay under test: its process tree's CPU time and resident memory from /proc.</summary>
    internal sealed class RelayProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly ThreadClock _clock;

        private RelayProcess(Process process)
        {
            _process = process;
            _clock = new ThreadClock(() => Tree(process.Id));
        }

        public static RelayProcess Start(string file, IEnumerable<string> args, string? dir, IReadOnlyDictionary<string, string>? env = null)
        {
            var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in args)
            {
                info.ArgumentList.Add(a);
            }

            foreach (var (name, value) in env ?? new Dictionary<string, string>())
            {
                info.Environment[name] = value;
            }

            var process = Process.Start(info)!;
            var relay = new RelayProcess(process);
            process.OutputDataReceived += (_, e) => relay.Remember(e.Data);
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null && dir is null) Console.Error.WriteLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return relay;
        }

        private readonly Queue<string> _lastOutput = new();

        public bool HasExited => _process.HasExited;

        /// <summary>Its state and last lines of standard output (where the server logs), for an error message.</summary>
        public string Describe()
        {
            lock (_lastOutput)
            {
                var state = _process.HasExited ? $"exit code {_process.ExitCode}" : "still running";
                return _lastOutput.Count == 0 ? $"{state}, no output" : $"{state}, last output:{Environment.NewLine}{string.Join(Environment.NewLine, _lastOutput)}";
            }
        }

        private void Remember(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (_lastOutput)
            {
                _lastOutput.Enqueue(line);
                if (_lastOutput.Count > 20)
                {
                    _lastOutput.Dequeue();
                }
            }
        }

        /// <summary>
        /// CPU seconds (user + system, to the nanosecond: see <see cref="ThreadClock"/>) and RSS bytes of
        /// the process and its children (nginx workers).
        /// </summary>
        public (double Cpu, long Rss) Sample()
        {
            long rss = 0;
            foreach (var pid in Tree(_process.Id))
            {
                try
                {
                    var status = File.ReadAllLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
                    rss += long.Parse(status.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
                }
                catch (IOException)
                {
                }
            }

            return (_clock.Read(), rss);
        }

        private static IEnumerable<int> Tree(int root)
        {
            yield return root;
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == root)
                {
                    continue;
                }

                string stat;
                try
                {
                    stat = File.ReadAllText(Path.Combine(dir, "stat"));
                }
                catch (IOException)
                {
                    continue;
                }

                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1], CultureInfo.InvariantCulture) == root)
                {
                    yield return pid;
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            _clock.Dispose();
            try
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
            }

            _process.Dispose();
        }
    }

    /// <summary>An RTMP server that accepts any publish and times the arrival of every stamped video frame.</summary>
    internal sealed class SinkServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly ConcurrentBag<(long Sequence, long Arrived)> _arrivals = [];
        private readonly List<Task> _connections = [];
        private readonly Task _accept;
        private volatile bool _counting;

        public SinkServer()
        {
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            _accept = AcceptAsync();
        }

        public int Port { get; }

        public void StartCounting()
        {
            _arrivals.Clear();
            _counting = true;
        }

        public List<double> Latencies(ConcurrentDictionary<long, long> sent, bool audio) =>
            [.. _arrivals.Where(a => a.Sequence >= AudioBase == audio && sent.ContainsKey(a.Sequence))
                .Select(a => Stopwatch.GetElapsedTime(sent[a.Sequence], a.Arrived).TotalMilliseconds)];

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

                socket.NoDelay = true;
                lock (_connections)
                {
                    _connections.Add(Task.Run(() => ServeAsync(socket)));
                }
            }
        }

        private async Task ServeAsync(Socket socket)
        {
            await using var connection = new RtmpConnection(new NetworkStream(socket, ownsSocket: true), "sink");
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

                    try
                    {
                        if (message.TypeId == RtmpMessageType.Video)
                        {
                            var body = message.Span;
                            if (_counting && body.Length >= 13 && body[1] == 1)
                            {
                                _arrivals.Add((BinaryPrimitives.ReadInt64BigEndian(body[5..]), Stopwatch.GetTimestamp()));
                            }
                        }
                        else if (message.TypeId == RtmpMessageType.Audio)
                        {
                            var body = message.Span;
                            if (_counting && body.Length >= 10 && body[1] == 1)
                            {
                                _arrivals.Add((BinaryPrimitives.ReadInt64BigEndian(body[2..]), Stopwatch.GetTimestamp()));
                            }
                        }
                        else if (message.TypeId == RtmpMessageType.CommandAmf0)
                        {
                            await ReplyAsync(connection, RtmpCommand.Parse(message.Payload));
                        }
                    }
                    finally
                    {
                        message.Dispose();
                    }
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or RtmpProtocolException or ObjectDisposedException)
            {
            }
        }

        private async Task ReplyAsync(RtmpConnection connection, RtmpCommand command)
        {
            switch (command.Name)
            {
                case "connect":
                    await connection.SetOutChunkSizeAsync(4096, _stop.Token);
                    await connection.SendCommandAsync(new RtmpCommand("_result", command.TransactionId,
                        new AmfObject { { "fmsVer", "FMS/3,0,1,123" }, { "capabilities", 31.0 } },
                        [new AmfObject { { "level", "status" }, { "code", RtmpStatus.ConnectSuccess }, { "description", "ok" } }]), 0, _stop.Token);
                    break;
                case "createStream":
                    await connection.SendCommandAsync(new RtmpCommand("_result", command.TransactionId, null, [1.0]), 0, _stop.Token);
                    break;
                case "publish":
                    await connection.SendCommandAsync(RtmpCommand.OnStatus("status", RtmpStatus.PublishStart, "ok"), 1, _stop.Token);
                    break;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accept;
            Task[] all;
            lock (_connections)
            {
                all = [.. _connections];
            }

            await Task.WhenAll(all);
        }
    }
}
