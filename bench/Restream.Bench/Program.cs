using BenchmarkDotNet.Running;
using Restream.Bench;

// restream-bench relay [seconds] [fanouts]   side by side with nginx-rtmp (needs nginx + libnginx-mod-rtmp, ffmpeg)
// restream-bench micro [BenchmarkDotNet args] fan-out and chunk parsing with the memory diagnoser
// restream-bench transcode [seconds] [preset]    single-decode ladder vs one ffmpeg per rendition
// restream-bench srt [seconds]                  SRT ingest side by side with srt-live-transmit (needs srt-tools)
// restream-bench agent [seconds]                the agent's CPU/RSS beside its ffmpeg vs plain ffmpeg, and screen-to-ingest latency (needs xvfb, pulseaudio, x11-xserver-utils)
var mode = args.Length > 0 ? args[0] : "relay";
if (mode == "floor-relay")
{
    return Restream.Bench.FloorRelay.Run(args[1..]);
}

if (mode == "micro")
{
    BenchmarkSwitcher.FromAssembly(typeof(FanOutBenchmarks).Assembly).Run(args[1..]);
    return 0;
}

var root = Directory.GetCurrentDirectory();
while (!File.Exists(Path.Combine(root, "Restream.slnx")))
{
    root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("run from inside the repository");
}

if (mode == "transcode")
{
    return await TranscodeBenchmark.RunAsync(root, args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 10,
        args.Length > 2 ? args[2] : "veryfast");
}

if (mode == "agent")
{
    return await AgentBenchmark.RunAsync(root, args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 30,
        args.Length > 2 ? args[2] : "default");
}

if (mode == "srt")
{
    return await SrtBenchmark.RunAsync(root, args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 30);
}

var seconds = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 20;
var fanouts = args.Length > 2 ? args[2].Split(',').Select(int.Parse).ToArray() : [1, 4, 16];
return await RelayBenchmark.RunAsync(root, seconds, fanouts);
