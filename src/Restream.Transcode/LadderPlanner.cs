using System.Globalization;

namespace Restream.Transcode;

/// <summary>One output of the ABR ladder.</summary>
public sealed record Rendition(string Name, int Width, int Height, double FrameRate, int VideoKbps, int AudioKbps)
{
    /// <summary>Bandwidth announced in the master playlist: video + audio + ~10 % container overhead.</summary>
    public int BandwidthBps => (int)((VideoKbps + AudioKbps) * 1000 * 1.1);
}

/// <summary>A rung of a ladder profile: the most a rendition of this height gets.</summary>
public sealed record LadderRung(int Height, double MaxFrameRate, int VideoKbps);

/// <summary>
/// Plans the renditions for a source: the profile's rungs at or below the source height (never
/// upscaling), the source's aspect ratio with even sizes, frame rates capped at the source's, and
/// bitrates capped at the source's so a low-bitrate feed is not inflated.
/// </summary>
public static class LadderPlanner
{
    public static readonly IReadOnlyList<LadderRung> DefaultProfile =
    [
        new(1080, 60, 6000),
        new(720, 30, 3000),
        new(480, 30, 1200),
        new(360, 30, 700),
    ];

    public static IReadOnlyList<Rendition> Plan(int sourceWidth, int sourceHeight, double sourceFrameRate, int sourceKbps,
        IReadOnlyList<LadderRung>? profile = null, int audioKbps = 128)
    {
        if (sourceWidth <= 0 || sourceHeight <= 0)
        {
            throw new ArgumentException($"source size {sourceWidth}x{sourceHeight} is not usable");
        }

        var fps = sourceFrameRate > 0 ? sourceFrameRate : 30;
        var renditions = new List<Rendition>();
        foreach (var rung in (profile ?? DefaultProfile).OrderByDescending(r => r.Height))
        {
            if (rung.Height > sourceHeight)
            {
                continue; // never upscale
            }

            var width = Even(sourceWidth * (double)rung.Height / sourceHeight);
            var rate = Math.Min(fps, rung.MaxFrameRate);
            var kbps = sourceKbps > 0 ? Math.Min(rung.VideoKbps, sourceKbps) : rung.VideoKbps;
            var name = rate > 30.5 ? $"{rung.Height}p{Math.Round(rate).ToString(CultureInfo.InvariantCulture)}" : $"{rung.Height}p";
            if (renditions.All(r => r.Name != name))
            {
                renditions.Add(new Rendition(name, width, rung.Height, rate, kbps, audioKbps));
            }
        }

        if (renditions.Count == 0)
        {
            // A source smaller than every rung: pass its own size through once.
            renditions.Add(new Rendition($"{sourceHeight}p", Even(sourceWidth), Even(sourceHeight), fps,
                sourceKbps > 0 ? sourceKbps : 500, audioKbps));
        }

        return renditions;
    }

    private static int Even(double value) => Math.Max(2, (int)Math.Round(value / 2) * 2);
}
