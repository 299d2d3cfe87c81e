using Restream.Media.Mp4;

namespace Restream.Media.Tests;

/// <summary>Cutting ffmpeg's low-latency fMP4 segments into parts (Fixtures/fmp4/make-fmp4.sh).</summary>
public sealed class Fmp4Tests
{
    private static byte[] Load(string name) => FixtureReader.Load(Path.Combine("fmp4", name));

    [Fact]
    public void Init_segment_gives_the_track_timescale()
    {
        Assert.Equal(15360u, Fmp4.ReadTrack(Load("init-0.m4s"))!.Value.Timescale); // ffmpeg: 512 × 30 fps
        Assert.Equal(48000u, Fmp4.ReadTrack(Load("init-1.m4s"))!.Value.Timescale);
        Assert.Null(Fmp4.ReadTrack(Load("chunk-0-00001.m4s")));
    }

    [Fact]
    public void A_video_segment_is_four_half_second_parts_the_first_one_independent()
    {
        var segment = Load("chunk-0-00001.m4s");
        var parts = Fmp4.ScanFragments(segment, Fmp4.ReadTrack(Load("init-0.m4s"))!.Value);
        Assert.Equal(4, parts.Count);
        Assert.All(parts, p => Assert.Equal(0.5, p.Duration, 3));
        Assert.Equal([true, false, false, false], parts.Select(p => p.Independent));
        // Contiguous after the styp box, up to the end of the file, each starting with a moof.
        Assert.Equal(segment.Length, parts[^1].Offset + parts[^1].Length);
        for (var i = 1; i < parts.Count; i++)
        {
            Assert.Equal(parts[i - 1].Offset + parts[i - 1].Length, parts[i].Offset);
        }

        Assert.All(parts, p => Assert.Equal("moof"u8.ToArray(), segment.AsSpan((int)p.Offset + 4, 4).ToArray()));
    }

    [Fact]
    public void Audio_parts_are_all_independent()
    {
        var parts = Fmp4.ScanFragments(Load("chunk-1-00001.m4s"), Fmp4.ReadTrack(Load("init-1.m4s"))!.Value);
        Assert.True(parts.Count >= 3);
        Assert.All(parts, p => Assert.True(p.Independent));
        Assert.InRange(parts.Sum(p => p.Duration), 1.9, 2.1);
    }

    [Fact]
    public void A_segment_still_being_written_yields_only_its_finished_parts()
    {
        var segment = Load("chunk-0-00001.m4s");
        var track = Fmp4.ReadTrack(Load("init-0.m4s"))!.Value;
        var all = Fmp4.ScanFragments(segment, track);
        // Cut in the middle of the third part's mdat, and just after the second part.
        Assert.Equal(2, Fmp4.ScanFragments(segment.AsSpan(0, (int)(all[2].Offset + all[2].Length - 100)), track).Count);
        Assert.Equal(2, Fmp4.ScanFragments(segment.AsSpan(0, (int)all[2].Offset), track).Count);
        Assert.Empty(Fmp4.ScanFragments(segment.AsSpan(0, 30), track));
        Assert.Empty(Fmp4.ScanFragments([], track));
    }

    [Fact]
    public void Garbage_gives_no_parts_and_no_exception()
    {
        var garbage = new byte[4096];
        new Random(7).NextBytes(garbage);
        Assert.Empty(Fmp4.ScanFragments(garbage, new Fmp4Track(90000, 0)));
        Assert.Null(Fmp4.ReadTrack(garbage));
    }
}
