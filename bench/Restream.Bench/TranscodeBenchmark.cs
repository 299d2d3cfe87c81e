using System.Diagnostics;
using System.Globalization;
using Restream.Transcode;

namespace Restream.Bench;

/// <summary>
/// Our single-decode ladder (one ffmpeg, split into every rendition) against one ffmpeg per rendition
/// (each decoding the source itself), on the same file, in one run: CPU seconds and realtime factor.
/// </summary>
public static class TranscodeBenchmark
{
    public static async Task<int> RunAsync(string repoRoot, int seconds, string preset)
    {
        var results = Path.Combine(repoRoot, "bench", "results");
        Directory.CreateDirectory(results);
        var rows = new List<string>();
        foreach (var (width, height, kbps) in new[] { (1920, 1080, 8000), (1280, 720, 3000) })
        {
            var input = Path.Combine(results, $"source-{height}p30-{seconds}s.mp4");
            if (!File.Exists(input))
            {
                Console.WriteLine($"encoding a {height}p30 source…");
                await RunAsync(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", $"testsrc2=size={width}x{height}:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", seconds.ToString(CultureInfo.InvariantCulture),
                    "-c:v", "libx264", "-preset", "veryfast", "-b:v", $"{kbps}k", "-g", "60", "-c:a", "aac", input]);
            }

            var ladder = LadderPlanner.Plan(width, height, 30, kbps);
            var single = Path.Combine(results, $"ladder-single-{height}");
            Reset(single);
            var (singleCpu, singleWall) = await RunAsync(HlsCommand.Build(input, single, ladder, preset: preset).Where(a => a != "-rw_timeout" && a != "10000000").ToList());

            // One process per rendition, running side by side as separate workers would.
            var runs = ladder.Select((r, i) =>
            {
                var dir = Path.Combine(results, $"ladder-separate-{height}-{i}");
                Reset(dir);
                return RunAsync(HlsCommand.Build(input, dir, [r], preset: preset).Where(a => a != "-rw_timeout" && a != "10000000").ToList());
            }).ToList();
            var clock = Stopwatch.StartNew();
            var separate = await Task.WhenAll(runs);
            var separateWall = clock.Elapsed;
            var separateCpu = separate.Sum(s => s.Cpu.TotalSeconds);

            rows.Add($"| {height}p30 → {string.Join("/", ladder.Select(r => r.Name))} | one ffmpeg, single decode + split | {singleCpu.TotalSeconds:0.0} | {seconds / singleWall.TotalSeconds:0.00}× |");
            rows.Add($"| | {ladder.Count} ffmpeg processes, one per rendition | {separateCpu:0.0} | {seconds / separateWall.TotalSeconds:0.00}× |");
            rows.Add($"| | **CPU ratio separate / single** | **{separateCpu / singleCpu.TotalSeconds:0.00}×** | |");
        }

        var table = string.Join('\n',
        [
            $"Transcode benchmark, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, {seconds} s source, x264 preset {preset}",
            "",
            "| source → ladder | how | CPU s | realtime factor |",
            "|---|---|---|---|",
            .. rows,
        ]);
        Console.WriteLine(table);
        await File.WriteAllTextAsync(Path.Combine(results, "transcode.md"), table + "\n");
        return 0;
    }

    private static void Reset(string dir)
    {
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }

        Directory.CreateDirectory(dir);
    }

    /// <summary>Runs ffmpeg to the end; returns its CPU time (user + system) and wall time.</summary>
    private static async Task<(TimeSpan Cpu, TimeSpan Wall)> RunAsync(IReadOnlyList<string> arguments)
    {
        var info = new ProcessStartInfo("ffmpeg") { RedirectStandardOutput = true, RedirectStandardError = true };
        // -benchmark makes ffmpeg print its own user and system CPU time at the end (at log level info).
        info.ArgumentList.Add("-benchmark");
        for (var i = 0; i < arguments.Count; i++)
        {
            info.ArgumentList.Add(i > 0 && arguments[i - 1] == "-loglevel" ? "info" : arguments[i]);
        }

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        await output;
        var log = await errors;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException("ffmpeg failed: " + log[^Math.Min(log.Length, 2000)..]);
        }

        var bench = System.Text.RegularExpressions.Regex.Match(log, @"bench: utime=([\d.]+)s stime=([\d.]+)s");
        var cpu = bench.Success
            ? double.Parse(bench.Groups[1].Value, CultureInfo.InvariantCulture) + double.Parse(bench.Groups[2].Value, CultureInfo.InvariantCulture)
            : double.NaN;
        return (TimeSpan.FromSeconds(cpu), clock.Elapsed);
    }
}
