namespace Restream.Transcode;

/// <summary>Whether an encoder works on this host, and why not.</summary>
public sealed record EncoderStatus(string Name, bool Built, bool Works, string? Reason);

/// <summary>What the probe found, best first, and the encoder chosen for H.264.</summary>
public sealed record EncoderReport(IReadOnlyList<EncoderStatus> Encoders, string ChosenH264);

/// <summary>
/// Finds which encoders really work here: one listed in <c>ffmpeg -encoders</c> may still fail for
/// want of a GPU, a driver or a device, so each is tried with a tiny real encode. The result is cached
/// for the life of the process. libx264 is the fallback that always exists in Debian's ffmpeg.
/// </summary>
public static class EncoderProbe
{
    /// <summary>Candidates in order of preference for H.264, then the others worth knowing about.</summary>
    public static readonly IReadOnlyList<string> Candidates =
        ["h264_nvenc", "h264_qsv", "h264_vaapi", "h264_amf", "libx264", "hevc_nvenc", "libx265", "libsvtav1"];

    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static EncoderReport? _cached;

    /// <summary>The encoder names in <c>ffmpeg -hide_banner -encoders</c> output.</summary>
    public static IReadOnlySet<string> ParseEncoders(string output)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in output.Split('\n'))
        {
            var parts = line.Trim().Split(' ', 3, StringSplitOptions.RemoveEmptyEntries);
            // " V....D libx264  description": six capability flags, then the name.
            if (parts.Length >= 2 && parts[0].Length == 6 && parts[0][0] is 'V' or 'A' or 'S' && parts[1] != "=")
            {
                names.Add(parts[1]);
            }
        }

        return names;
    }

    /// <summary>The filter names in <c>ffmpeg -hide_banner -filters</c> output (" TSC scale_cuda  V->V  …").</summary>
    public static IReadOnlySet<string> ParseFilters(string output)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in output.Split('\n'))
        {
            var parts = line.Trim().Split(' ', 3, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length >= 3 && parts[0].Length == 3 && parts[0].All(c => c is '.' or 'T' or 'S' or 'C' or 'A') && parts[2].Contains("->", StringComparison.Ordinal))
            {
                names.Add(parts[1]);
            }
        }

        return names;
    }

    private static IReadOnlySet<string>? _filters;

    /// <summary>The filters this ffmpeg has (cached): which GPU scalers can be used.</summary>
    public static async Task<IReadOnlySet<string>> FiltersAsync(CancellationToken cancellationToken)
    {
        if (_filters is null)
        {
            var (_, listing) = await RunAsync(["-hide_banner", "-filters"], cancellationToken).ConfigureAwait(false);
            _filters = ParseFilters(listing);
        }

        return _filters;
    }

    /// <summary>The arguments of a 5-frame test encode with <paramref name="encoder"/>.</summary>
    public static IReadOnlyList<string> TestArguments(string encoder)
    {
        List<string> args = ["-hide_banner", "-nostdin", "-loglevel", "error"];
        if (encoder.EndsWith("_vaapi", StringComparison.Ordinal))
        {
            args.AddRange(["-vaapi_device", "/dev/dri/renderD128"]);
        }

        args.AddRange(["-f", "lavfi", "-i", "color=black:s=256x144:r=30", "-frames:v", "5"]);
        if (encoder.EndsWith("_vaapi", StringComparison.Ordinal))
        {
            args.AddRange(["-vf", "format=nv12,hwupload"]);
        }

        args.AddRange(["-c:v", encoder, "-f", "null", "-"]);
        return args;
    }

    /// <summary>Turns ffmpeg's failure output into a reason a streamer or operator can act on.</summary>
    public static string Explain(string encoder, string stderr)
    {
        var text = stderr.Trim();
        if (text.Contains("libcuda", StringComparison.Ordinal) || text.Contains("No NVENC capable devices", StringComparison.Ordinal)
            || text.Contains("nvenc", StringComparison.OrdinalIgnoreCase) && text.Contains("driver", StringComparison.OrdinalIgnoreCase))
        {
            return "no NVIDIA GPU or driver (NVENC needs the NVIDIA driver and libcuda)";
        }

        if (text.Contains("MFX session", StringComparison.Ordinal) || text.Contains("libmfx", StringComparison.Ordinal))
        {
            return "no Intel Quick Sync device or runtime";
        }

        if (text.Contains("vaapi_device", StringComparison.Ordinal) || text.Contains("VAAPI", StringComparison.Ordinal) || text.Contains("/dev/dri", StringComparison.Ordinal))
        {
            return "no VA-API device (/dev/dri/renderD128) or driver";
        }

        if (text.Contains("Unknown encoder", StringComparison.Ordinal) || text.Contains("Encoder not found", StringComparison.Ordinal))
        {
            return $"this ffmpeg was built without {encoder}";
        }

        if (text.Contains("amf", StringComparison.OrdinalIgnoreCase))
        {
            return "no AMD AMF runtime (Windows with an AMD GPU)";
        }

        var last = text.Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim();
        return string.IsNullOrEmpty(last) ? "the test encode failed" : last;
    }

    /// <summary>Probes once per process (later calls get the cached report).</summary>
    public static async Task<EncoderReport> ProbeAsync(CancellationToken cancellationToken)
    {
        if (_cached is not null)
        {
            return _cached;
        }

        await Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_cached is not null)
            {
                return _cached;
            }

            var (_, listing) = await RunAsync(["-hide_banner", "-encoders"], cancellationToken).ConfigureAwait(false);
            var built = ParseEncoders(listing);
            var statuses = new List<EncoderStatus>();
            foreach (var encoder in Candidates)
            {
                if (!built.Contains(encoder))
                {
                    statuses.Add(new EncoderStatus(encoder, false, false, $"this ffmpeg was built without {encoder}"));
                    continue;
                }

                var (code, output) = await RunAsync(TestArguments(encoder), cancellationToken).ConfigureAwait(false);
                statuses.Add(new EncoderStatus(encoder, true, code == 0, code == 0 ? null : Explain(encoder, output)));
            }

            var chosen = statuses.FirstOrDefault(s => s.Works && s.Name.StartsWith("h264", StringComparison.Ordinal) || s.Works && s.Name == "libx264")?.Name ?? "libx264";
            return _cached = new EncoderReport(statuses, chosen);
        }
        finally
        {
            Gate.Release();
        }
    }

    private static Task<(int Code, string Output)> RunAsync(IReadOnlyList<string> arguments, CancellationToken cancellationToken) =>
        OneShotProcess.RunAsync("ffmpeg", arguments, cancellationToken);
}
