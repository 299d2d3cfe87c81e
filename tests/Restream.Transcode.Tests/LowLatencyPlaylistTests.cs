namespace Restream.Transcode.Tests;

/// <summary>Low-latency HLS playlists over ffmpeg's fragmented segments (fixtures: Restream.Media.Tests/Fixtures/fmp4).</summary>
public sealed class LowLatencyPlaylistTests
{
    private static byte[] Load(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "fmp4", name));

    // ffmpeg's live media playlist for rendition 0 with segments 1 and 2 done (the fixture's segment 1 stands in for both).
    private const string Ffmpeg = """
        #EXTM3U
        #EXT-X-VERSION:6
        #EXT-X-TARGETDURATION:2
        #EXT-X-MEDIA-SEQUENCE:7
        #EXT-X-MAP:URI="init-0.m4s"
        #EXTINF:2.000000,
        #EXT-X-PROGRAM-DATE-TIME:2026-11-24T22:31:28.000+0000
        chunk-0-00007.m4s
        #EXTINF:2.000000,
        #EXT-X-PROGRAM-DATE-TIME:2026-11-24T22:31:30.000+0000
        chunk-0-00008.m4s
        """;

    /// <summary>Two parts of the segment written, the third under way.</summary>
    private static int TwoPartsAndABit()
    {
        var parts = Restream.Media.Mp4.Fmp4.ScanFragments(Load("chunk-0-00001.m4s"), Restream.Media.Mp4.Fmp4.ReadTrack(Load("init-0.m4s"))!.Value);
        return (int)parts[2].Offset + 100;
    }

    private static Func<string, byte[]?> Files(int growingBytes) => name => name switch
    {
        "init-0.m4s" => Load("init-0.m4s"),
        "chunk-0-00007.m4s" or "chunk-0-00008.m4s" => Load("chunk-0-00001.m4s"),
        "chunk-0-00009.m4s.tmp" when growingBytes > 0 => Load("chunk-0-00001.m4s")[..growingBytes], // as ffmpeg writes it
        _ => null,
    };

    [Fact]
    public void Segments_and_the_one_being_written_are_listed_as_parts()
    {
        // Segment 9 is being written: two parts done, the third under way.
        var media = LowLatencyPlaylist.Build(Ffmpeg, Files(TwoPartsAndABit()), 0.5);
        var lines = media.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("#EXTM3U", lines[0]);
        Assert.Contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5", lines);
        Assert.Contains("#EXT-X-PART-INF:PART-TARGET=0.5", lines);
        Assert.Contains("#EXT-X-MEDIA-SEQUENCE:7", lines);
        Assert.Contains("#EXT-X-MAP:URI=\"init-0.m4s\"", lines);
        // Parts come before their segment's EXTINF, the first one independent.
        var first = Array.IndexOf(lines, lines.First(l => l.StartsWith("#EXT-X-PART:", StringComparison.Ordinal)));
        Assert.StartsWith("#EXT-X-PART:DURATION=0.5,URI=\"chunk-0-00007.m4s\",BYTERANGE=\"", lines[first]);
        Assert.EndsWith(",INDEPENDENT=YES", lines[first]);
        Assert.Equal(4, lines.Count(l => l.Contains("URI=\"chunk-0-00007.m4s\"", StringComparison.Ordinal)));
        Assert.Equal(4, lines.Count(l => l.Contains("URI=\"chunk-0-00008.m4s\"", StringComparison.Ordinal)));
        var growing = lines.Where(l => l.Contains("URI=\"chunk-0-00009.m4s\"", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, growing.Count);
        Assert.DoesNotContain("chunk-0-00009.m4s", lines.Where(l => !l.StartsWith('#')));
        Assert.Equal((9, 1, 8), (media.LastSequence, media.LastPart, media.LastComplete));
        // The byte ranges are the fragments: length@offset, the first after the 24-byte styp.
        Assert.Contains("BYTERANGE=\"", growing[0]);
        Assert.Contains("@24\"", growing[0]);
    }

    [Fact]
    public void Blocking_reload_is_satisfied_only_by_what_exists()
    {
        var media = LowLatencyPlaylist.Build(Ffmpeg, Files(TwoPartsAndABit()), 0.5);
        Assert.True(LowLatencyPlaylist.Satisfies(media, 8, null));
        Assert.True(LowLatencyPlaylist.Satisfies(media, 9, 1));
        Assert.False(LowLatencyPlaylist.Satisfies(media, 9, 2));
        Assert.False(LowLatencyPlaylist.Satisfies(media, 9, null)); // segment 9 is not finished
        Assert.False(LowLatencyPlaylist.Satisfies(media, 10, 0));
    }

    [Fact]
    public void Older_segments_are_listed_without_parts_and_an_ended_stream_says_so()
    {
        var long_ = Ffmpeg.Replace("#EXT-X-MEDIA-SEQUENCE:7\n", "#EXT-X-MEDIA-SEQUENCE:5\n") + "\n#EXT-X-ENDLIST";
        long_ = long_.Replace("#EXT-X-MAP:URI=\"init-0.m4s\"\n", "#EXT-X-MAP:URI=\"init-0.m4s\"\n#EXTINF:2.000000,\nchunk-0-00005.m4s\n#EXTINF:2.000000,\nchunk-0-00006.m4s\n");
        var media = LowLatencyPlaylist.Build(long_, n => n == "chunk-0-00005.m4s" ? Load("chunk-0-00001.m4s") : Files(0)(n), 0.5);
        Assert.DoesNotContain("URI=\"chunk-0-00005.m4s\"", media.Text); // beyond the three newest: no parts
        Assert.EndsWith("#EXT-X-ENDLIST\n", media.Text);
    }

    [Theory]
    [InlineData("chunk-0-00012.m4s", "chunk-0-00013.m4s")]
    [InlineData("chunk-2-00099.m4s", "chunk-2-00100.m4s")]
    [InlineData("chunk-0-99999.m4s", "chunk-0-100000.m4s")]
    [InlineData("whatever.ts", null)]
    public void Next_segment_name(string uri, string? next) => Assert.Equal(next, LowLatencyPlaylist.NextSegment(uri));
}
