using System.Globalization;
using Restream.Transcode;

namespace Restream.Agent;

/// <summary>
/// The H.264 encoders the agent can drive, each with the arguments that give a streaming-friendly
/// CBR feed: constant bitrate with a buffer of two seconds' worth, a keyframe every N seconds and
/// no scene-cut keyframes (platforms want a steady GOP), and no B-frames unless asked for.
/// </summary>
public static class Encoders
{
    /// <summary>In order of preference: hardware first (it leaves the CPU to the game), libx264 last.</summary>
    public static readonly IReadOnlyList<string> Known = ["h264_nvenc", "h264_qsv", "h264_amf", "h264_vaapi", "libx264"];

    /// <summary>The encoder to use: the one asked for, or the best that works here.</summary>
    public static string Choose(string wanted, IReadOnlyList<EncoderStatus> probed)
    {
        if (wanted != "auto")
        {
            return wanted;
        }

        foreach (var name in Known)
        {
            if (probed.Any(p => p.Name == name && p.Works))
            {
                return name;
            }
        }

        return "libx264";
    }

    /// <summary>
    /// x264's preset for a CPU that also runs a game: the encoder should take at most a core or two.
    /// Two cores: superfast; four: veryfast; up to eight: faster; more: fast.
    /// </summary>
    public static string X264PresetFor(int cores) => cores switch
    {
        <= 2 => "superfast",
        <= 4 => "veryfast",
        <= 8 => "faster",
        _ => "fast",
    };

    public static IReadOnlyList<string> VideoArguments(string encoder, EncoderSettings settings, int fps, int? cores = null)
    {
        var gop = Math.Max(1, (int)Math.Round(settings.KeyframeSeconds * fps));
        var kbps = settings.VideoKbps;
        var args = new List<string> { "-c:v", encoder };
        switch (encoder)
        {
            case "libx264":
                var preset = settings.X264Preset == "auto" ? X264PresetFor(cores ?? Environment.ProcessorCount) : settings.X264Preset;
                args.AddRange(["-preset", preset, "-tune", "zerolatency", "-profile:v", "high",
                    "-x264-params", "nal-hrd=cbr:force-cfr=1", "-sc_threshold", "0"]);
                break;
            case "h264_nvenc":
                args.AddRange(["-preset", "p4", "-tune", "ll", "-rc", "cbr", "-profile:v", "high", "-no-scenecut", "1"]);
                break;
            case "h264_qsv":
                args.AddRange(["-preset", "veryfast", "-look_ahead", "0", "-profile:v", "high"]);
                break;
            case "h264_amf":
                args.AddRange(["-usage", "lowlatency", "-quality", "speed", "-rc", "cbr", "-profile:v", "high"]);
                break;
            case "h264_vaapi":
                args.AddRange(["-rc_mode", "CBR", "-profile:v", "high"]);
                break;
            default:
                throw new ProfileException($"encoder.name: '{encoder}' is not one of {string.Join(", ", Known)}");
        }

        args.AddRange([
            "-b:v", $"{kbps}k", "-maxrate", $"{kbps}k", "-bufsize", $"{kbps * 2}k",
            "-g", gop.ToString(CultureInfo.InvariantCulture), "-keyint_min", gop.ToString(CultureInfo.InvariantCulture),
            "-bf", settings.BFrames.ToString(CultureInfo.InvariantCulture),
        ]);
        if (encoder != "h264_vaapi")
        {
            args.AddRange(["-pix_fmt", "yuv420p"]);
        }

        return args;
    }
}
