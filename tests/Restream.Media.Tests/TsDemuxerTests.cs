using Restream.Media.Codecs;
using Restream.Media.Flv;
using Restream.Media.Ts;

namespace Restream.Media.Tests;

/// <summary>MPEG-TS demuxing on fixtures made by ffmpeg (Fixtures/make-ts.sh).</summary>
public sealed class TsDemuxerTests
{
    private sealed record Frame(MediaKind Kind, uint Timestamp, bool Keyframe, bool Header, byte[] Body);

    private static (List<Frame> Frames, TsDemuxer Demuxer) Demux(byte[] ts, Func<int>? pieces = null)
    {
        var frames = new List<Frame>();
        var demuxer = new TsDemuxer(f =>
        {
            frames.Add(new Frame(f.Kind, f.Timestamp, f.IsKeyframe, f.IsSequenceHeader, f.Payload.ToArray()));
            f.Release();
        });
        for (var offset = 0; offset < ts.Length;)
        {
            var take = Math.Min(pieces?.Invoke() ?? ts.Length, ts.Length - offset);
            demuxer.Feed(ts.AsSpan(offset, take));
            offset += take;
        }

        demuxer.Flush();
        return (frames, demuxer);
    }

    [Fact]
    public void H264_and_AAC_come_out_as_FLV_frames_with_sequence_headers_first()
    {
        var (frames, demuxer) = Demux(FixtureReader.Load("h264-aac.ts"));
        var video = frames.Where(f => f.Kind == MediaKind.Video).ToList();
        var audio = frames.Where(f => f.Kind == MediaKind.Audio).ToList();
        Assert.True(video[0].Header);
        Assert.True(audio[0].Header);
        Assert.Equal(30, video.Count(v => !v.Header)); // 2 s at 15 fps
        Assert.Equal(2, video.Count(v => v.Keyframe && !v.Header));
        Assert.True(video[1].Keyframe);
        Assert.Equal(0, demuxer.ContinuityErrors);

        var record = AvcDecoderConfigurationRecord.Parse(video[0].Body.AsSpan(5));
        var sps = SequenceParameterSet.Parse(record.SequenceParameterSets[0]);
        Assert.Equal((320, 240), (sps.Width, sps.Height));
        var asc = AudioSpecificConfig.Parse(audio[0].Body.AsSpan(2));
        Assert.Equal((2, 48000, 1), (asc.ObjectType, asc.SampleRate, asc.Channels));
        Assert.InRange(audio.Count(a => !a.Header), 2 * 48000 / 1024 - 2, 2 * 48000 / 1024 + 3);

        // Every AVCC body's NAL lengths add up, and timestamps start near zero and step by 1/15 s.
        foreach (var v in video.Where(v => !v.Header))
        {
            var pos = 5;
            while (pos < v.Body.Length)
            {
                pos += 4 + (int)BigEndian.ReadUInt32(v.Body.AsSpan(pos));
            }

            Assert.Equal(v.Body.Length, pos);
            Assert.Equal(FlvMedia.AvcCodecId, FlvMedia.VideoCodecId(v.Body));
        }

        var decodeOrder = video.Where(v => !v.Header).Select(v => v.Timestamp).ToList();
        Assert.InRange(decodeOrder[0], 0u, 200u);
        Assert.All(decodeOrder.Zip(decodeOrder.Skip(1)), p => Assert.InRange(p.Second - p.First, 66u, 67u));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(188)]
    [InlineData(1316)] // seven TS packets: one SRT live payload
    [InlineData(1000)]
    public void Any_split_of_the_input_gives_the_same_frames(int piece)
    {
        var ts = FixtureReader.Load("h264-aac.ts");
        var whole = Demux(ts).Frames;
        var split = Demux(ts, () => piece).Frames;
        Assert.Equal(whole.Count, split.Count);
        Assert.All(whole.Zip(split), p => Assert.Equal(p.First.Body, p.Second.Body));
    }

    [Fact]
    public void Missing_PAT_at_start_waits_for_the_next_one()
    {
        var ts = FixtureReader.Load("h264-aac.ts");
        var cut = ts.AsSpan(188 * 40).ToArray(); // start in the middle: no PAT/PMT first
        var (frames, _) = Demux(cut);
        var video = frames.Where(f => f.Kind == MediaKind.Video && !f.Header).ToList();
        Assert.NotEmpty(video);
        Assert.True(frames.First(f => f.Kind == MediaKind.Video).Header, "video starts with its sequence header");
        Assert.InRange(video.Count, 15, 29);
    }

    [Fact]
    public void Lost_packets_are_counted_and_only_the_damaged_PES_is_dropped()
    {
        var ts = FixtureReader.Load("h264-aac.ts");
        var packets = Enumerable.Range(0, ts.Length / 188).Select(i => ts.AsSpan(i * 188, 188).ToArray()).ToList();
        // Drop three video packets in the middle (video PID is the one most packets carry).
        var videoPid = packets.GroupBy(p => (p[1] & 0x1F) << 8 | p[2]).OrderByDescending(g => g.Count()).First().Key;
        var victims = packets.Select((p, i) => (p, i)).Where(x => ((x.p[1] & 0x1F) << 8 | x.p[2]) == videoPid).Skip(100).Take(3).Select(x => x.i).ToHashSet();
        var damaged = packets.Where((_, i) => !victims.Contains(i)).SelectMany(p => p).ToArray();
        var (frames, demuxer) = Demux(damaged);
        Assert.True(demuxer.ContinuityErrors >= 1);
        var video = frames.Count(f => f.Kind == MediaKind.Video && !f.Header);
        Assert.InRange(video, 27, 29);
    }

    [Fact]
    public void Timestamps_keep_increasing_across_the_33_bit_PTS_wrap()
    {
        var (frames, _) = Demux(FixtureReader.Load("h264-aac-wrap.ts"));
        var video = frames.Where(f => f.Kind == MediaKind.Video && !f.Header).Select(f => f.Timestamp).ToList();
        Assert.Equal(30, video.Count);
        Assert.All(video.Zip(video.Skip(1)), p => Assert.InRange(p.Second - p.First, 66u, 67u));
        Assert.InRange(video[^1] - video[0], 1900u, 2000u);
    }

    [Fact]
    public void Garbage_before_and_between_packets_is_skipped()
    {
        var ts = FixtureReader.Load("h264-aac.ts");
        byte[] noisy = [1, 2, 3, 0x11, .. ts];
        var (frames, demuxer) = Demux(noisy);
        Assert.Equal(4, demuxer.SkippedBytes);
        Assert.Equal(30, frames.Count(f => f.Kind == MediaKind.Video && !f.Header));
    }

    [Fact]
    public void Unwrap_places_values_next_to_the_last_one()
    {
        var demuxer = new TsDemuxer(f => f.Release());
        const long wrap = 1L << 33;
        Assert.Equal(wrap - 90, demuxer.Unwrap(wrap - 90));
        Assert.Equal(wrap + 3000, demuxer.Unwrap(3000)); // wrapped forward
        Assert.Equal(wrap - 10, demuxer.Unwrap(wrap - 10)); // a B-frame PTS just before the wrap
    }
}
