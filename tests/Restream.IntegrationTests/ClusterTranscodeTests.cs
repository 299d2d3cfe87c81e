using System.Diagnostics;
using Restream.IntegrationTests.Infrastructure;

namespace Restream.IntegrationTests;

/// <summary>
/// Cluster mode with a real Redis: our server as the ingest node queues the transcode job on a Redis
/// Stream; two worker processes (the real <c>restream --roles worker</c>) share the consumer group
/// and one output folder (a shared volume in Kubernetes).
/// </summary>
[Collection("cpu-heavy")]
public sealed class ClusterTranscodeTests
{
    private static string ServerDll => Path.Combine(AppContext.BaseDirectory, "restream.dll");

    private static ExternalProcess StartWorker(RedisServer redis, string name, string output) =>
        ExternalProcess.Start("dotnet",
        [
            ServerDll, "--roles", "worker", $"--Restream:Coordination={redis.Url}", $"--Restream:Coordination:NodeId={name}",
            $"--Restream:Transcode:OutputDirectory={output}", "--Restream:Transcode:Preset=ultrafast", "--urls=http://127.0.0.1:0",
        ]);

    [Fact]
    public async Task A_killed_workers_job_is_taken_over_and_the_playlist_keeps_growing()
    {
        await using var redis = await RedisServer.StartAsync();
        var output = TestPorts.NewTempDirectory("shared-hls");
        await using var ingest = await RestreamServer.StartAsync(new Dictionary<string, string?>
        {
            ["Restream:Channels:0:Name"] = "cluster",
            ["Restream:Channels:0:StreamKey"] = "cluster_key_5647382910",
            ["Restream:Roles"] = "ingest,relay,api",
            ["Restream:Coordination"] = redis.Url,
            ["Restream:Coordination:AdvertiseHost"] = "127.0.0.1",
            ["Restream:Transcode:Enabled"] = "true",
            ["Restream:Transcode:OutputDirectory"] = output,
        });
        await using var workerA = StartWorker(redis, "worker-a", output);
        await using var workerB = StartWorker(redis, "worker-b", output);
        Assert.True(await TestPorts.EventuallyAsync(() => workerA.Output.Contains("waiting for jobs") && workerB.Output.Contains("waiting for jobs"),
            TimeSpan.FromSeconds(30)), workerA.Output + workerB.Output);

        var master = Path.Combine(output, "cluster", "master.m3u8");
        var playlist = Path.Combine(output, "cluster", "media_0.m3u8");
        await using var publisher = Ffmpeg.Publish(ingest.PublishUrl("cluster_key_5647382910"), 60, size: "640x360", bitrateKbps: 800);
        Assert.True(await TestPorts.EventuallyAsync(() => File.Exists(master), TimeSpan.FromSeconds(10), 200),
            $"no master playlist 10 s after going live\n{ingest.Log.Text}\n{workerA.Tail()}\n{workerB.Tail()}");

        // Exactly one worker runs the job.
        var owner = ProcessTree.ChildNamed(workerA.Id, "ffmpeg") is not null ? workerA : workerB;
        var other = owner == workerA ? workerB : workerA;
        var ownerFfmpeg = ProcessTree.ChildNamed(owner.Id, "ffmpeg")!.Value;
        Assert.Null(ProcessTree.ChildNamed(other.Id, "ffmpeg"));
        Assert.True(await TestPorts.EventuallyAsync(() => Segments(output).Count >= 2, TimeSpan.FromSeconds(10)));

        Process.Start("kill", ["-KILL", owner.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
        var killed = DateTime.UtcNow;
        var clock = Stopwatch.StartNew();
        // Its ffmpeg dies with it (parent-death signal), so two never write the same files.
        Assert.True(await TestPorts.EventuallyAsync(() => !ProcessTree.IsRunning(ownerFfmpeg), TimeSpan.FromSeconds(3)), "the killed worker's ffmpeg lives on");

        // The other worker claims the job and new segments appear in the same playlist.
        Assert.True(await TestPorts.EventuallyAsync(
            () => ProcessTree.ChildNamed(other.Id, "ffmpeg") is not null
                  && Segments(output).Any(s => s.LastWriteTimeUtc > killed)
                  && File.GetLastWriteTimeUtc(playlist) > killed,
            TimeSpan.FromSeconds(10), 100), $"not taken over within 10 s\n{other.Tail()}");
        Console.WriteLine($"taken over, new segments written {clock.Elapsed.TotalSeconds:0.0} s after the kill");
        Assert.Contains("abandoned by its worker", other.Output);
        var before = File.ReadAllText(playlist);
        Assert.True(await TestPorts.EventuallyAsync(() => File.ReadAllText(playlist) != before && Segments(output).Count(s => s.LastWriteTimeUtc > killed) >= 2,
            TimeSpan.FromSeconds(8)), "the playlist stopped growing after the takeover");
        var streams = await Ffmpeg.ProbeAsync(playlist, TimeSpan.FromSeconds(30), countFrames: false);
        Assert.Contains(streams, s => s.CodecType == "video" && s.Width == 640 && s.Height == 360);

        // The stream ends: the job is completed and leaves the queue; the worker's ffmpeg stops.
        publisher.Kill();
        Assert.True(await TestPorts.EventuallyAsync(() => ProcessTree.ChildNamed(other.Id, "ffmpeg") is null, TimeSpan.FromSeconds(15)), other.Tail());
        Assert.True(await TestPorts.EventuallyAsync(() => redis.CliAsync("XLEN", "restream:transcode:jobs").Result == "0", TimeSpan.FromSeconds(10)));
    }

    private static List<FileInfo> Segments(string output) =>
        [.. new DirectoryInfo(Path.Combine(output, "cluster")).EnumerateFiles("chunk-0-*.m4s")];

    [Fact]
    public async Task Killing_the_server_outright_leaves_no_ffmpeg_behind()
    {
        var output = TestPorts.NewTempDirectory("hls-kill");
        var port = TestPorts.GetFreeTcpPort();
        var data = TestPorts.NewTempDirectory("data-kill");
        await using var server = ExternalProcess.Start("dotnet",
        [
            ServerDll, $"--Restream:Rtmp:Port={port}", "--Restream:Rtmp:Address=127.0.0.1", "--urls=http://127.0.0.1:0",
            "--Restream:Channels:0:Name=killme", "--Restream:Channels:0:StreamKey=killme_key_1122334455",
            "--Restream:Transcode:Enabled=true", $"--Restream:Transcode:OutputDirectory={output}", "--Restream:Transcode:Preset=ultrafast",
            $"--Restream:Database=Data Source={Path.Combine(data, "r.db")}", $"--Restream:DataProtectionKeys={Path.Combine(data, "keys")}",
        ]);
        await TestPorts.WaitForTcpAsync(port, TimeSpan.FromSeconds(30));
        await using var publisher = Ffmpeg.Publish($"rtmp://127.0.0.1:{port}/live/killme_key_1122334455", 30, size: "640x360", bitrateKbps: 800);
        int? ffmpeg = null;
        Assert.True(await TestPorts.EventuallyAsync(() => (ffmpeg = ProcessTree.ChildNamed(server.Id, "ffmpeg")) is not null, TimeSpan.FromSeconds(15)), server.Tail());

        Process.Start("kill", ["-KILL", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();

        Assert.True(await TestPorts.EventuallyAsync(() => !ProcessTree.IsRunning(ffmpeg!.Value), TimeSpan.FromSeconds(3)), "ffmpeg outlived the killed server");
    }
}
