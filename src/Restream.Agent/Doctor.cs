using System.Net.Sockets;
using Restream.Agent.Sources;
using Restream.Transcode;

namespace Restream.Agent;

/// <summary>One check: what was looked at, whether it is fine, what was found, and how to fix it.</summary>
public sealed record DoctorCheck(string Name, DoctorResult Result, string Detail, string? Fix = null);

public enum DoctorResult
{
    Ok,
    Warning,
    Failed,
}

/// <summary>
/// <c>restream-agent doctor</c>: everything that has to be right before going live — ffmpeg and its
/// capture devices and filters, the display server, the sound server, the encoders, the stream key
/// and the road to the ingest — each with the fix in plain words.
/// </summary>
public static class Doctor
{
    public static async Task<IReadOnlyList<DoctorCheck>> RunAsync(AgentProfile? profile, CancellationToken cancellationToken)
    {
        var checks = new List<DoctorCheck>();
        var (code, version) = await SourceCatalog.RunAsync("ffmpeg", ["-hide_banner", "-version"], cancellationToken).ConfigureAwait(false);
        if (code != 0)
        {
            checks.Add(new DoctorCheck("ffmpeg", DoctorResult.Failed, "not found on PATH",
                OperatingSystem.IsWindows() ? "winget install Gyan.FFmpeg (then open a new terminal)" : "sudo apt install ffmpeg"));
            return checks;
        }

        var major = CapturePlanner.ParseFfmpegMajor(version);
        checks.Add(new DoctorCheck("ffmpeg", major >= 4 ? DoctorResult.Ok : DoctorResult.Failed, version.Split('\n')[0].Trim(),
            major >= 4 ? null : "ffmpeg 4.4 or newer is needed"));

        var (_, devices) = await SourceCatalog.RunAsync("ffmpeg", ["-hide_banner", "-devices"], cancellationToken).ConfigureAwait(false);
        var (_, filters) = await SourceCatalog.RunAsync("ffmpeg", ["-hide_banner", "-filters"], cancellationToken).ConfigureAwait(false);
        checks.AddRange(FeatureChecks(devices, filters, major, OperatingSystem.IsWindows()));

        if (!OperatingSystem.IsWindows())
        {
            checks.Add(DisplayCheck());
            checks.Add(await AudioCheckAsync(cancellationToken).ConfigureAwait(false));
        }
        else
        {
            var audio = await SourceCatalog.DshowAudioDevicesAsync(cancellationToken).ConfigureAwait(false);
            checks.Add(audio.Any(a => a.SystemOutput)
                ? new DoctorCheck("system sound", DoctorResult.Ok, audio.First(a => a.SystemOutput).Name)
                : new DoctorCheck("system sound", DoctorResult.Warning, "no loopback device",
                    "enable \"Stereo Mix\" (Sound settings → Recording) or install a virtual audio capturer"));
        }

        var report = await EncoderProbe.ProbeAsync(cancellationToken).ConfigureAwait(false);
        var working = report.Encoders.Where(e => e.Works && Encoders.Known.Contains(e.Name)).Select(e => e.Name).ToList();
        var hardware = working.Where(e => e != "libx264").ToList();
        checks.Add(new DoctorCheck("encoders", working.Count > 0 ? DoctorResult.Ok : DoctorResult.Failed,
            working.Count > 0 ? $"{string.Join(", ", working)} (auto picks {Encoders.Choose("auto", report.Encoders)})" : "no H.264 encoder works",
            hardware.Count == 0 ? "no hardware encoder: libx264 uses the CPU; install the GPU driver (NVIDIA, intel-media-va-driver) to free it" : null));

        if (profile is not null)
        {
            try
            {
                var key = StreamKeyStore.Resolve(profile);
                checks.Add(new DoctorCheck("stream key", DoctorResult.Ok, $"found ({StreamKeyStore.Mask(key)})"));
            }
            catch (ProfileException e)
            {
                checks.Add(new DoctorCheck("stream key", DoctorResult.Failed, "missing", e.Message));
            }

            checks.Add(await IngestCheckAsync(new Uri(profile.Server), cancellationToken).ConfigureAwait(false));
        }

        return checks;
    }

    /// <summary>Which capture devices and filters this ffmpeg has, for this platform.</summary>
    public static IEnumerable<DoctorCheck> FeatureChecks(string devices, string filters, int major, bool windows)
    {
        bool Has(string listing, string name) => listing.Split('\n').Any(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is { Length: >= 2 } p && p[1] == name);
        if (windows)
        {
            yield return Feature("screen capture (ddagrab)", Has(filters, "ddagrab"), "an ffmpeg 6.1+ build with Direct3D 11 (gyan.dev or BtbN builds)");
            yield return major >= 8 && Has(filters, "gfxcapture")
                ? new DoctorCheck("window capture", DoctorResult.Ok, "Windows Graphics Capture (gfxcapture)")
                : new DoctorCheck("window capture", DoctorResult.Warning, "gdigrab only: games and accelerated windows may be black",
                    "install ffmpeg 8 or newer for Windows Graphics Capture");
            yield return Feature("audio capture (dshow)", Has(devices, "dshow"), "an ffmpeg build with DirectShow");
        }
        else
        {
            yield return Feature("screen capture (x11grab)", Has(devices, "x11grab"), "an ffmpeg built with libxcb (Debian's is)");
            yield return Feature("audio capture (pulse)", Has(devices, "pulse"), "an ffmpeg built with libpulse (Debian's is)");
        }

        yield return Feature("text overlays (drawtext)", Has(filters, "drawtext"), "an ffmpeg built with libfreetype");
        yield return Feature("image overlays (overlay)", Has(filters, "overlay"), "a full ffmpeg build");
    }

    private static DoctorCheck Feature(string name, bool present, string fix) =>
        present ? new DoctorCheck(name, DoctorResult.Ok, "available") : new DoctorCheck(name, DoctorResult.Failed, "missing", fix);

    private static DoctorCheck DisplayCheck()
    {
        var wayland = SourceCatalog.WaylandNote();
        try
        {
            var monitors = X11.Monitors(SourceCatalog.Display);
            var detail = $"X11 {SourceCatalog.Display}: " + string.Join(", ", monitors.Select(m => $"{m.Name} {m.Width}x{m.Height}"));
            return wayland is null
                ? new DoctorCheck("display", DoctorResult.Ok, detail)
                : new DoctorCheck("display", DoctorResult.Warning, detail + " (through XWayland)", wayland);
        }
        catch (Exception e) when (e is SourceException or DllNotFoundException)
        {
            return new DoctorCheck("display", DoctorResult.Failed, e.Message,
                wayland ?? "run the agent inside your desktop session (DISPLAY=:0), or install libx11-6");
        }
    }

    private static async Task<DoctorCheck> AudioCheckAsync(CancellationToken cancellationToken)
    {
        try
        {
            var sources = await SourceCatalog.PulseSourcesAsync(cancellationToken).ConfigureAwait(false);
            return new DoctorCheck("system sound", DoctorResult.Ok, $"{SourceCatalog.DefaultSystemSource(sources)} ({sources.Count} sources)");
        }
        catch (SourceException e)
        {
            return new DoctorCheck("system sound", DoctorResult.Failed, e.Message, "start PulseAudio or PipeWire for your user, or set audio.system to \"none\"");
        }
    }

    /// <summary>Can the ingest be reached? A TCP connect for RTMP(S); SRT is UDP, so only the name is resolved.</summary>
    public static async Task<DoctorCheck> IngestCheckAsync(Uri server, CancellationToken cancellationToken)
    {
        var port = server.IsDefaultPort || server.Port <= 0 ? server.Scheme switch { "rtmps" => 443, "srt" => 9000, _ => 1935 } : server.Port;
        try
        {
            if (server.Scheme == "srt")
            {
                var addresses = await System.Net.Dns.GetHostAddressesAsync(server.Host, cancellationToken).ConfigureAwait(false);
                return new DoctorCheck("ingest", DoctorResult.Ok, $"{server.Host} resolves to {addresses[0]} (SRT is UDP: a push shows whether port {port} is open)");
            }

            using var client = new TcpClient();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            await client.ConnectAsync(server.Host, port, timeout.Token).ConfigureAwait(false);
            return new DoctorCheck("ingest", DoctorResult.Ok, $"{server.Host}:{port} accepts connections");
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return new DoctorCheck("ingest", DoctorResult.Failed, $"{server.Host}:{port} cannot be reached ({(e is OperationCanceledException ? "timed out" : e.Message)})",
                "check the server address and port in the profile, and that a firewall lets the port through");
        }
    }
}
