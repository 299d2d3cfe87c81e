using System.Buffers;
using Restream.Media.Ts;

namespace Restream.Media.Tests;

public sealed class TsMuxerTests
{
    private sealed record Frame(MediaKind Kind, uint Timestamp, byte[] Body);

    private static List<Frame> Demux(ReadOnlySpan<byte> ts)
    {
        var frames = new List<Frame>();
        var demuxer = new TsDemuxer(f =>
        {
            frames.Add(new Frame(f.Kind, f.Timestamp, f.Payload.ToArray()));
            f.Release();
        });
        demuxer.Feed(ts);
        demuxer.Flush();
        Assert.Equal(0, demuxer.ContinuityErrors);
        return frames;
    }

    [Fact]
    public void Muxed_frames_demux_back_to_the_same_frames()
    {
        // ffmpeg's TS → our demuxer → our muxer → our demuxer: every body and timestamp survives.
        var original = Demux(FixtureReader.Load("h264-aac.ts"));
        var muxer = new TsMuxer();
        var output = new ArrayBufferWriter<byte>();
        foreach (var frame in original)
        {
            var media = MediaFrame.Copy(frame.Kind, frame.Timestamp, frame.Body);
            muxer.Write(media, output);
            media.Release();
        }

        Assert.Equal(0, output.WrittenCount % TsDemuxer.PacketSize);
        var again = Demux(output.WrittenSpan);
        Assert.Equal(original.Count(f => f.Kind == MediaKind.Video), again.Count(f => f.Kind == MediaKind.Video));
        Assert.Equal(original.Count(f => f.Kind == MediaKind.Audio), again.Count(f => f.Kind == MediaKind.Audio));
        var baseShift = (int)again.First(f => f.Kind == MediaKind.Video).Timestamp - (int)original.First(f => f.Kind == MediaKind.Video).Timestamp;
        foreach (var kind in new[] { MediaKind.Video, MediaKind.Audio })
        {
            var a = original.Where(f => f.Kind == kind).ToList();
            var b = again.Where(f => f.Kind == kind).ToList();
            for (var i = 0; i < a.Count; i++)
            {
                Assert.Equal(a[i].Body, b[i].Body);
                Assert.InRange((int)b[i].Timestamp - (int)a[i].Timestamp - baseShift, -1, 1);
            }
        }
    }

    [Fact]
    public async Task Ffprobe_reads_our_TS()
    {
        var original = Demux(FixtureReader.Load("h264-aac.ts"));
        var muxer = new TsMuxer();
        var output = new ArrayBufferWriter<byte>();
        foreach (var frame in original)
        {
            var media = MediaFrame.Copy(frame.Kind, frame.Timestamp, frame.Body);
            muxer.Write(media, output);
            media.Release();
        }

        var file = Path.Combine(Path.GetTempPath(), $"restream-mux-{Guid.NewGuid():N}.ts");
        await File.WriteAllBytesAsync(file, output.WrittenMemory.ToArray());
        try
        {
            var info = new System.Diagnostics.ProcessStartInfo("ffprobe")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                ArgumentList = { "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", file },
            };
            using var process = System.Diagnostics.Process.Start(info)!;
            var text = await process.StandardOutput.ReadToEndAsync();
            var errors = await process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            Assert.True(process.ExitCode == 0, errors);
            Assert.Contains("h264,320,240,30", text);
            Assert.Contains("aac", text);
            Assert.Equal("", errors.Trim());
        }
        finally
        {
            File.Delete(file);
        }
    }
}
