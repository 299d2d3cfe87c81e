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

    private static ArrayBufferWriter<byte> Mux(IEnumerable<Frame> frames, bool video = true)
    {
        var muxer = new TsMuxer { HasVideo = video };
        var output = new ArrayBufferWriter<byte>();
        foreach (var frame in frames)
        {
            var media = MediaFrame.Copy(frame.Kind, frame.Timestamp, frame.Body);
            muxer.Write(media, output);
            media.Release();
        }

        return output;
    }

    [Fact]
    public void Muxed_frames_demux_back_to_the_same_frames()
    {
        // ffmpeg's TS → our demuxer → our muxer → our demuxer: every body and timestamp survives.
        var original = Demux(FixtureReader.Load("h264-aac.ts"));
        var output = Mux(original);

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
    public void Frames_the_muxer_cannot_describe_are_left_out_without_an_exception()
    {
        var original = Demux(FixtureReader.Load("h264-aac.ts"));
        var videoHeader = original.First(f => f.Kind == MediaKind.Video);
        var audioHeader = original.First(f => f.Kind == MediaKind.Audio);
        var key = original.First(f => f.Kind == MediaKind.Video && f.Body[0] >> 4 == 1 && f.Body[1] == 1);
        var audio = original.First(f => f.Kind == MediaKind.Audio && f.Body[1] == 1);
        byte[] unreadableAudioHeader = [0xAF, 0, 0x12, 0x78]; // channel configuration 15
        var output = Mux([
            videoHeader, new Frame(MediaKind.Audio, 0, unreadableAudioHeader),
            audio with { Timestamp = 10 }, // no readable audio header yet: left out
            key with { Timestamp = 33 },
            audioHeader,
            new Frame(MediaKind.Audio, 60, [0xAF, 1, .. new byte[9000]]), // longer than ADTS can count: left out
            audio with { Timestamp = 80 },
            new Frame(MediaKind.Video, 90, [0x17, 0, 0, 0, 0, 1, 0x64]), // a truncated AVC header: the last one stays
            key with { Timestamp = 100 },
            new Frame(MediaKind.Audio, 105, unreadableAudioHeader), // and the last audio header too
            audio with { Timestamp = 107 },
        ]);

        var media = Demux(output.WrittenSpan).Where(f => f.Body[1] == 1).ToList();
        var first = media.Where(f => f.Kind == MediaKind.Video).MinBy(f => f.Timestamp)!;
        Assert.Equal(key.Body, first.Body);
        var times = media.Select(f => (f.Kind, (int)f.Timestamp - (int)first.Timestamp)).Order().ToList();
        Assert.Equal([(MediaKind.Audio, 47), (MediaKind.Audio, 74), (MediaKind.Video, 0), (MediaKind.Video, 67)], times);

        // A NAL length near 2^31 ends the frame's NALs there, without an exception.
        var huge = Mux([videoHeader, new Frame(MediaKind.Video, 0, [0x17, 1, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFE, 0x65, 0x88])]);
        Assert.True(huge.WrittenCount > 0);
    }

    [Theory]
    [InlineData(new byte[] { 0x12, 0x10 }, 1, 4, 2)] // AAC LC, 44.1 kHz, stereo
    [InlineData(new byte[] { 0x2B, 0x92, 0x08, 0x00 }, 1, 7, 2)] // HE-AAC (44.1 kHz out): ADTS carries its LC core at 22.05 kHz
    [InlineData(new byte[] { 0x11, 0xB8 }, 1, 3, 7)] // 7.1: channel configuration 7, not a count of 8
    public void Adts_headers_describe_the_AAC_core(byte[] config, int profile, int rateIndex, int channelConfiguration)
    {
        var output = Mux([
            new Frame(MediaKind.Audio, 0, [0xAF, 0, .. config]),
            new Frame(MediaKind.Audio, 23, [0xAF, 1, 0x21, 0x10, 0x05]),
        ], video: false);
        var audio = Assert.Single(Demux(output.WrittenSpan), f => f.Kind == MediaKind.Audio && f.Body[1] == 1);
        Assert.Equal(new byte[] { 0x21, 0x10, 0x05 }, audio.Body[2..]);

        // The PES payload's ADTS header (ISO/IEC 13818-7 6.2): profile, sampling frequency index, channel configuration.
        var bytes = output.WrittenSpan.ToArray();
        var at = Enumerable.Range(0, bytes.Length - 7).First(i => bytes[i] == 0xFF && bytes[i + 1] == 0xF1);
        Assert.Equal(profile, bytes[at + 2] >> 6);
        Assert.Equal(rateIndex, bytes[at + 2] >> 2 & 0xF);
        Assert.Equal(channelConfiguration, (bytes[at + 2] & 1) << 2 | bytes[at + 3] >> 6);
    }

    [Fact]
    public async Task Ffprobe_reads_our_TS()
    {
        var original = Demux(FixtureReader.Load("h264-aac.ts"));
        var output = Mux(original);

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

public sealed class TsRoundTripProperties
{
    /// <summary>
    /// Random streams (sizes from 1 byte to 60 kB, B-frame composition offsets, keyframes, audio between
    /// video) survive mux then demux unchanged, for many seeds.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(42)]
    [InlineData(1234)]
    public void Random_streams_survive_mux_then_demux(int seed)
    {
        var random = new Random(seed);
        var sps = Convert.FromHexString("6764001EACD940A02FF970110000030001000003003C0F162D96");
        byte[] pps = [0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0];
        byte[] record = [1, 0x64, 0, 0x1E, 0xFF, 0xE1, 0, (byte)sps.Length, .. sps, 1, 0, (byte)pps.Length, .. pps];
        var input = new List<(MediaKind Kind, uint Ts, byte[] Body)>
        {
            (MediaKind.Video, 0, [0x17, 0, 0, 0, 0, .. record]),
            (MediaKind.Audio, 0, [0xAF, 0, 0x11, 0x90]),
        };
        uint ts = 0;
        for (var i = 0; i < 120; i++)
        {
            var key = i % 30 == 0;
            var nals = Enumerable.Range(0, random.Next(1, 4)).Select(_ =>
            {
                var nal = new byte[random.Next(1, 20_000)];
                random.NextBytes(nal);
                nal[0] = (byte)(key ? 0x65 : 0x41); // IDR or non-IDR slice
                // Annex B cannot carry 00 00 0x (x <= 3) inside a NAL: encoders insert emulation prevention.
                for (var j = 2; j < nal.Length; j++)
                {
                    if (nal[j - 2] == 0 && nal[j - 1] == 0 && nal[j] <= 3)
                    {
                        nal[j] = 4;
                    }
                }

                if (nal[^1] == 0)
                {
                    nal[^1] = 1;
                }

                return nal;
            }).ToList();
            var cts = random.Next(0, 3) * 33;
            byte[] body = [(byte)(key ? 0x17 : 0x27), 1, 0, 0, (byte)cts, .. nals.SelectMany(n => (byte[])[(byte)(n.Length >> 24), (byte)(n.Length >> 16), (byte)(n.Length >> 8), (byte)n.Length, .. n])];
            input.Add((MediaKind.Video, ts, body));
            if (random.Next(2) == 0)
            {
                var raw = new byte[random.Next(1, 600)];
                random.NextBytes(raw);
                input.Add((MediaKind.Audio, ts + 10, [0xAF, 1, .. raw]));
            }

            ts += 33;
        }

        var muxer = new TsMuxer();
        var output = new ArrayBufferWriter<byte>();
        foreach (var (kind, t, body) in input)
        {
            var frame = MediaFrame.Copy(kind, t, body);
            muxer.Write(frame, output);
            frame.Release();
        }

        var back = new List<(MediaKind Kind, uint Ts, byte[] Body)>();
        var demuxer = new TsDemuxer(f =>
        {
            back.Add((f.Kind, f.Timestamp, f.Payload.ToArray()));
            f.Release();
        });
        demuxer.Feed(output.WrittenSpan);
        demuxer.Flush();

        Assert.Equal(0, demuxer.ContinuityErrors);
        foreach (var kind in new[] { MediaKind.Video, MediaKind.Audio })
        {
            var sent = input.Where(f => f.Kind == kind).ToList();
            var got = back.Where(f => f.Kind == kind).ToList();
            Assert.Equal(sent.Count, got.Count);
            for (var i = 0; i < sent.Count; i++)
            {
                Assert.Equal(sent[i].Body, got[i].Body);
                if (i > 0)
                {
                    // (A sequence header has no time of its own in TS: it comes out with its first frame.)
                    Assert.Equal(sent[i].Ts, got[i].Ts);
                }
            }
        }
    }
}
