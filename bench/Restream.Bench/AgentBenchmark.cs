using System.Diagnostics;
using System.Globalization;

namespace Restream.Bench;

/// <summary>
/// The agent's own cost beside the ffmpeg it drives, and how long a change on screen takes to come
/// out of our ingest. On a headless desktop (Xvfb, PulseAudio null sink with a tone): the same
/// 720p30 capture + libx264 encode is pushed (a) by the agent and (b) by plain ffmpeg straight to
/// the ingest, one after the other. Latency: the desktop flips black/white with xsetroot; a player
/// pulls the stream from the ingest with no buffering and notes when the picture flips.
/// </summary>
public static class AgentBenchmark
{
    private const string Key = "benchkey-agent-123456";

    public static async Task<int> RunAsync(string repoRoot, int seconds, string audio = "default")
    {
        var work = Path.Combine(repoRoot, "bench", "results", "agent");
        Directory.CreateDirectory(work);
        var display = $":{150 + Random.Shared.Next(50)}";
        var pulseSocket = Path.Combine(work, "pulse.sock");
        var env = new Dictionary<string, string>
        {
            ["DISPLAY"] = display, ["PULSE_SERVER"] = "unix:" + pulseSocket, ["XDG_RUNTIME_DIR"] = work, ["HOME"] = work,
            ["RESTREAM_STREAM_KEY"] = Key,
        };
        await using var xvfb = Start("Xvfb", [display, "-screen", "0", "1280x720x24", "-nolisten", "tcp", "-br", "-noreset"], env);
        File.Delete(pulseSocket);
        await using var pulse = Start("pulseaudio", ["-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
            $"--load=module-native-protocol-unix auth-anonymous=1 socket={pulseSocket}", "--load=module-null-sink sink_name=bench"], env);
        await Task.Delay(1500);
        await using var tone = Start("ffmpeg", ["-loglevel", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-f", "pulse", "-device", "bench", "tone"], env);

        var port = RelayBenchmark.FreePort();
        var serverDll = Path.Combine(repoRoot, "src", "Restream.Server", "bin", "Release", "net10.0", "restream.dll");
        var agentDll = Path.Combine(repoRoot, "src", "Restream.Agent", "bin", "Release", "net10.0", "restream-agent.dll");
        // RESTREAM_AGENT=path/to/published/restream-agent measures the single file a streamer installs.
        var published = Environment.GetEnvironmentVariable("RESTREAM_AGENT");
        await using var server = Start("dotnet", [serverDll, $"--Restream:Rtmp:Port={port}", "--Restream:Rtmp:Address=127.0.0.1", "--urls=http://127.0.0.1:0",
            "--Restream:Channels:0:Name=bench", $"--Restream:Channels:0:StreamKey={Key}", "--Logging:LogLevel:Default=Warning",
            $"--Restream:Database=Data Source={Path.Combine(work, "restream.db")}", $"--Restream:DataProtectionKeys={Path.Combine(work, "keys")}"], env);
        await RelayBenchmark.WaitForPortAsync(port);

        string[] capture = ["--region", "0,0,1280x720", "--size", "1280x720", "--fps", "30", "--video-kbps", "4500", "--encoder", "libx264", "--audio", audio];
        Console.WriteLine($"agent: {seconds} s of 720p30 desktop + system sound, libx264 veryfast 4.5 Mb/s, pushed to our ingest on {port}");
        await using var agent = published is { Length: > 0 }
            ? Start(published, ["push", "--server", $"rtmp://127.0.0.1:{port}/live", .. capture, "--json"], env)
            : Start("dotnet", [agentDll, "push", "--server", $"rtmp://127.0.0.1:{port}/live", .. capture, "--json"], env);
        await Task.Delay(TimeSpan.FromSeconds(4)); // warm-up: JIT, encoder start
        var ffmpegPid = ChildFfmpeg(agent.Id) ?? throw new InvalidOperationException("the agent runs no ffmpeg");
        var agentBefore = Sample(agent.Id);
        var ffmpegBefore = Sample(ffmpegPid);
        var latencies = await MeasureLatencyAsync(display, port, seconds, env);
        var agentAfter = Sample(agent.Id);
        var ffmpegAfter = Sample(ffmpegPid);
        var wall = seconds;
        var agentCpu = (agentAfter.Cpu - agentBefore.Cpu) / wall;
        var agentFfmpegCpu = (ffmpegAfter.Cpu - ffmpegBefore.Cpu) / wall;
        var arguments = await DryRunAsync(agentDll, capture, port, env);
        await agent.DisposeAsync();

        // The peer: the very same ffmpeg command, pushing to the ingest itself instead of to the agent.
        var direct = arguments.Take(arguments.Count - 1).Append($"rtmp://127.0.0.1:{port}/live/{Key}").ToList(); // "pipe:1" → the ingest
        await using var plain = Start("ffmpeg", direct, env);
        await Task.Delay(TimeSpan.FromSeconds(4));
        var plainBefore = Sample(plain.Id);
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        var plainAfter = Sample(plain.Id);
        var plainCpu = (plainAfter.Cpu - plainBefore.Cpu) / wall;

        latencies.Sort();
        Console.WriteLine();
        Console.WriteLine("| what | CPU (share of one core) | RSS | of which private |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| agent process (reads FLV, pushes RTMP) | {agentCpu:P2} | {agentAfter.Rss / 1e6:0} MB | {agentAfter.Private / 1e6:0} MB |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| its ffmpeg (capture + x264 + AAC) | {agentFfmpegCpu:P1} | {ffmpegAfter.Rss / 1e6:0} MB | {ffmpegAfter.Private / 1e6:0} MB |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| plain ffmpeg pushing RTMP itself (peer) | {plainCpu:P1} | {plainAfter.Rss / 1e6:0} MB | {plainAfter.Private / 1e6:0} MB |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ratio (agent + its ffmpeg) / plain ffmpeg: {(agentCpu + agentFfmpegCpu) / plainCpu:0.00}x CPU"));
        if (latencies.Count > 0)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"screen change → out of our ingest → decoded by a player: median {latencies[latencies.Count / 2]:0} ms, " +
                $"min {latencies[0]:0} ms, max {latencies[^1]:0} ms ({latencies.Count} flips)"));
        }

        return 0;
    }

    /// <summary>Flips the desktop black/white and times when a player pulling from the ingest sees it.</summary>
    private static async Task<List<double>> MeasureLatencyAsync(string display, int port, int seconds, Dictionary<string, string> env)
    {
        var info = new ProcessStartInfo("ffmpeg") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[]
                 {
                     "-hide_banner", "-loglevel", "error", "-fflags", "nobuffer", "-flags", "low_delay", "-probesize", "32768", "-analyzeduration", "0",
                     "-i", $"rtmp://127.0.0.1:{port}/live/bench", "-an", "-vf", "scale=16:9", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1",
                 })
        {
            info.ArgumentList.Add(a);
        }

        using var player = Process.Start(info)!;
        player.ErrorDataReceived += (_, _) => { };
        player.BeginErrorReadLine();
        var output = player.StandardOutput.BaseStream;
        var white = false;
        var flippedAt = 0L;
        var latencies = new List<double>();
        var frame = new byte[16 * 9];
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var reader = Task.Run(async () =>
        {
            var seen = false;
            while (!stop.IsCancellationRequested)
            {
                await output.ReadExactlyAsync(frame, CancellationToken.None);
                var bright = frame.Average(b => b) > 128;
                if (bright == Volatile.Read(ref white) && bright != seen && Interlocked.Read(ref flippedAt) != 0)
                {
                    lock (latencies)
                    {
                        latencies.Add(Stopwatch.GetElapsedTime(Interlocked.Exchange(ref flippedAt, 0)).TotalMilliseconds);
                    }
                }

                seen = bright;
            }
        });
        await Task.Delay(2000);
        while (!stop.IsCancellationRequested)
        {
            var next = !white;
            await RunAsync("xsetroot", ["-display", display, "-solid", next ? "white" : "black"], env);
            Volatile.Write(ref white, next);
            Interlocked.Exchange(ref flippedAt, Stopwatch.GetTimestamp());
            await Task.Delay(1500);
        }

        player.Kill();
        await Task.WhenAny(reader, Task.Delay(2000));
        return latencies;
    }

    private static async Task<List<string>> DryRunAsync(string agentDll, string[] capture, int port, Dictionary<string, string> env)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true };
        foreach (var a in new[] { agentDll, "push", "--server", $"rtmp://127.0.0.1:{port}/live", "--dry-run" }.Concat(capture))
        {
            info.ArgumentList.Add(a);
        }

        foreach (var (k, v) in env)
        {
            info.Environment[k] = v;
        }

        using var process = Process.Start(info)!;
        var line = (await process.StandardOutput.ReadToEndAsync()).Trim();
        await process.WaitForExitAsync();
        // "ffmpeg a b "c d" …": split on spaces outside quotes.
        var args = new List<string>();
        var current = new System.Text.StringBuilder();
        var quoted = false;
        foreach (var c in line["ffmpeg ".Length..])
        {
            if (c == '"')
            {
                quoted = !quoted;
            }
            else if (c == ' ' && !quoted)
            {
                args.Add(current.ToString());
                current.Clear();
            }
            else
            {
                current.Append(c);
            }
        }

        args.Add(current.ToString());
        return args;
    }

    private static int? ChildFfmpeg(int parent)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                if (int.TryParse(Path.GetFileName(dir), out var pid) && File.ReadAllText(Path.Combine(dir, "comm")).Trim() == "ffmpeg")
                {
                    var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                    if (int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture) == parent)
                    {
                        return pid;
                    }
                }
            }
            catch (IOException)
            {
            }
        }

        return null;
    }

    /// <summary>CPU seconds, resident memory, and the private (anonymous) part of it: the rest is shared, file-backed code.</summary>
    private static (double Cpu, long Rss, long Private) Sample(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var cpu = (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
        var status = File.ReadAllLines($"/proc/{pid}/status");
        long Kb(string name) => long.Parse(status.First(l => l.StartsWith(name, StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        return (cpu, Kb("VmRSS:"), Kb("RssAnon:"));
    }

    private static async Task RunAsync(string file, string[] args, Dictionary<string, string> env)
    {
        await using var p = Start(file, args, env);
        await p.WaitAsync();
    }

    private static Child Start(string file, IEnumerable<string> args, Dictionary<string, string> env)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        foreach (var (k, v) in env)
        {
            info.Environment[k] = v;
        }

        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new Child(process);
    }

    private sealed class Child(Process process) : IAsyncDisposable
    {
        public int Id => process.Id;

        public Task WaitAsync() => process.WaitForExitAsync();

        public async ValueTask DisposeAsync()
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }

                await process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
            }

            process.Dispose();
        }
    }
}
