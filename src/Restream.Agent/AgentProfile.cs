using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Restream.Agent;

/// <summary>
/// Everything the agent needs to go live, as a streamer writes it in a profile file
/// (<c>restream-agent init</c> writes a commented one). The stream key is never in here: only the
/// name of the environment variable that holds it, or the agent's key store.
/// </summary>
public sealed record AgentProfile
{
    /// <summary>Ingest URL without the key: <c>rtmp://host/live</c>, <c>rtmps://host:1936/live</c>, <c>srt://host:9000</c>.</summary>
    public string Server { get; init; } = "rtmp://localhost:1935/live";

    /// <summary>Other ingests to try, in order, when the server cannot be reached (same stream key).</summary>
    public IReadOnlyList<string> FallbackServers { get; init; } = [];

    /// <summary>The environment variable that holds the stream key (else the key store).</summary>
    public string KeyEnv { get; init; } = "RESTREAM_STREAM_KEY";

    public VideoSettings Video { get; init; } = new();
    public AudioSettings Audio { get; init; } = new();
    public EncoderSettings Encoder { get; init; } = new();
    public IReadOnlyList<OverlaySettings> Overlays { get; init; } = [];

    /// <summary>Extra PEM certificates to trust for <c>rtmps://</c> (a self-signed server or a private CA).</summary>
    public string? TrustedCertificateFile { get; init; }

    /// <summary>Seconds of media kept while the ingest is unreachable (resume starts at the newest keyframe).</summary>
    public int BufferSeconds { get; init; } = 10;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
    };

    public static AgentProfile Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new ProfileException($"profile {path} not found (write one with: restream-agent init --profile {path})");
        }

        try
        {
            var profile = JsonSerializer.Deserialize<AgentProfile>(File.ReadAllText(path), Json)
                ?? throw new ProfileException($"profile {path} is empty");
            profile.Validate();
            return profile;
        }
        catch (JsonException e)
        {
            // System.Text.Json names the JSON path and line of the bad member.
            throw new ProfileException($"profile {path}: {e.Message}");
        }
    }

    /// <summary>Checks every value up front, naming the key that is wrong.</summary>
    public void Validate()
    {
        ValidateServer("server", Server);
        for (var i = 0; i < FallbackServers.Count; i++)
        {
            ValidateServer($"fallbackServers[{i}]", FallbackServers[i]);
        }

        if (string.IsNullOrWhiteSpace(KeyEnv))
        {
            throw new ProfileException("keyEnv: give the name of the environment variable that holds the stream key");
        }

        Video.Validate();
        Audio.Validate();
        Encoder.Validate();
        for (var i = 0; i < Overlays.Count; i++)
        {
            Overlays[i].Validate($"overlays[{i}]");
        }

        if (TrustedCertificateFile is { Length: > 0 } trusted && !File.Exists(trusted))
        {
            throw new ProfileException($"trustedCertificateFile: {trusted} not found");
        }

        if (BufferSeconds is < 1 or > 120)
        {
            throw new ProfileException($"bufferSeconds: {BufferSeconds} is outside 1..120");
        }
    }

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    private static void ValidateServer(string key, string value)
    {
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("rtmp" or "rtmps" or "srt"))
        {
            throw new ProfileException($"{key}: '{value}' is not an rtmp://, rtmps:// or srt:// URL");
        }

        if (uri.Scheme is "rtmp" or "rtmps" && uri.AbsolutePath.Trim('/').Length == 0)
        {
            throw new ProfileException($"{key}: '{value}' has no application (e.g. {uri.Scheme}://{uri.Authority}/live)");
        }
    }
}

/// <summary>What to capture and at what size and rate.</summary>
public sealed record VideoSettings
{
    /// <summary><c>screen</c>, <c>window</c>, <c>region</c> or <c>test</c> (a test pattern, for trying things out).</summary>
    public string Source { get; init; } = "screen";

    /// <summary>For <c>window</c>: part of the window title (case-insensitive), or an id such as <c>0x2a00007</c>.</summary>
    public string? Window { get; init; }

    /// <summary>For <c>screen</c>: the monitor index from <c>restream-agent sources</c>.</summary>
    public int Monitor { get; init; }

    /// <summary>For <c>region</c>: <c>X,Y,WIDTHxHEIGHT</c> on the desktop.</summary>
    public string? Region { get; init; }

    /// <summary>Output size <c>WIDTHxHEIGHT</c>; empty keeps the captured size.</summary>
    public string? Size { get; init; } = "1280x720";

    public int Fps { get; init; } = 30;

    /// <summary>Draw the mouse pointer.</summary>
    public bool Cursor { get; init; } = true;

    internal void Validate()
    {
        if (Source is not ("screen" or "window" or "region" or "test"))
        {
            throw new ProfileException($"video.source: '{Source}' is not one of screen, window, region, test");
        }

        if (Source == "window" && string.IsNullOrWhiteSpace(Window))
        {
            throw new ProfileException("video.window: give part of the window title to capture (see: restream-agent sources)");
        }

        if (Source == "region" && !Geometry.TryParseRegion(Region, out _))
        {
            throw new ProfileException($"video.region: '{Region}' is not X,Y,WIDTHxHEIGHT (e.g. 0,0,1920x1080)");
        }

        if (!string.IsNullOrEmpty(Size) && !Geometry.TryParseSize(Size, out _, out _))
        {
            throw new ProfileException($"video.size: '{Size}' is not WIDTHxHEIGHT (e.g. 1920x1080)");
        }

        if (Fps is < 1 or > 240)
        {
            throw new ProfileException($"video.fps: {Fps} is outside 1..240");
        }
    }
}

/// <summary>Which sounds go into the stream.</summary>
public sealed record AudioSettings
{
    /// <summary>System sound: <c>default</c> (what you hear), a device name from <c>sources</c>, or <c>none</c>.</summary>
    public string System { get; init; } = "default";

    /// <summary>A microphone to mix in (device name from <c>sources</c>), or null.</summary>
    public string? Microphone { get; init; }

    /// <summary>Microphone volume relative to system sound.</summary>
    public double MicrophoneVolume { get; init; } = 1.0;

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(System))
        {
            throw new ProfileException("audio.system: give 'default', 'none' or a device name");
        }

        if (MicrophoneVolume is < 0 or > 4)
        {
            throw new ProfileException($"audio.microphoneVolume: {MicrophoneVolume} is outside 0..4");
        }
    }
}

/// <summary>How the feed is encoded.</summary>
public sealed record EncoderSettings
{
    /// <summary><c>auto</c> (best working hardware encoder, else libx264) or an encoder name.</summary>
    public string Name { get; init; } = "auto";

    public int VideoKbps { get; init; } = 6000;
    public int AudioKbps { get; init; } = 160;
    public double KeyframeSeconds { get; init; } = 2;

    /// <summary>B-frames; RTMP platforms want none.</summary>
    public int BFrames { get; init; }

    /// <summary>
    /// Speed/quality preset for libx264 (ultrafast … medium), or <c>auto</c>: chosen from the CPU's core
    /// count so the encoder leaves room for the game. Hardware encoders pick their own.
    /// </summary>
    public string X264Preset { get; init; } = "auto";

    internal void Validate()
    {
        if (Name != "auto" && !Encoders.Known.Contains(Name))
        {
            throw new ProfileException($"encoder.name: '{Name}' is not auto or one of {string.Join(", ", Encoders.Known)}");
        }

        if (VideoKbps is < 100 or > 100_000)
        {
            throw new ProfileException($"encoder.videoKbps: {VideoKbps} is outside 100..100000");
        }

        if (AudioKbps is < 32 or > 512)
        {
            throw new ProfileException($"encoder.audioKbps: {AudioKbps} is outside 32..512");
        }

        if (KeyframeSeconds is < 0.5 or > 10)
        {
            throw new ProfileException($"encoder.keyframeSeconds: {KeyframeSeconds} is outside 0.5..10");
        }

        if (X264Preset is not ("auto" or "ultrafast" or "superfast" or "veryfast" or "faster" or "fast" or "medium"))
        {
            throw new ProfileException($"encoder.x264Preset: '{X264Preset}' is not auto, ultrafast, superfast, veryfast, faster, fast or medium");
        }

        if (BFrames is < 0 or > 4)
        {
            throw new ProfileException($"encoder.bFrames: {BFrames} is outside 0..4");
        }
    }
}

/// <summary>A text or image drawn over the picture.</summary>
public sealed record OverlaySettings
{
    /// <summary><c>text</c> or <c>image</c>.</summary>
    public string Type { get; init; } = "text";

    /// <summary>For text: the words to draw (ffmpeg's <c>%{localtime}</c> works when <see cref="Expand"/> is on).</summary>
    public string? Text { get; init; }

    /// <summary>For text: a file whose content is drawn and re-read every frame ("now playing").</summary>
    public string? TextFile { get; init; }

    public bool Expand { get; init; }

    /// <summary>A font file; empty picks a sans-serif font of the system.</summary>
    public string? Font { get; init; }

    public int FontSize { get; init; } = 32;
    public string Color { get; init; } = "white";
    public bool Box { get; init; } = true;
    public string BoxColor { get; init; } = "black@0.5";

    /// <summary>For image: a PNG file.</summary>
    public string? Image { get; init; }

    public double Scale { get; init; } = 1.0;
    public double Opacity { get; init; } = 1.0;

    /// <summary><c>top-left</c>, <c>top-right</c>, <c>bottom-left</c>, <c>bottom-right</c>, <c>center</c> or <c>X,Y</c>.</summary>
    public string Position { get; init; } = "top-left";

    public int Margin { get; init; } = 16;

    internal void Validate(string key)
    {
        switch (Type)
        {
            case "text" when string.IsNullOrEmpty(Text) == string.IsNullOrEmpty(TextFile):
                throw new ProfileException($"{key}: a text overlay needs exactly one of text or textFile");
            case "image" when string.IsNullOrEmpty(Image):
                throw new ProfileException($"{key}.image: give the PNG file to draw");
            case "image" when !File.Exists(Image):
                throw new ProfileException($"{key}.image: {Image} not found");
            case not ("text" or "image"):
                throw new ProfileException($"{key}.type: '{Type}' is not text or image");
        }

        if (!OverlayPosition.TryParse(Position, out _))
        {
            throw new ProfileException($"{key}.position: '{Position}' is not top-left, top-right, bottom-left, bottom-right, center or X,Y");
        }

        if (Opacity is < 0 or > 1 || Scale is <= 0 or > 10 || FontSize is < 4 or > 512)
        {
            throw new ProfileException($"{key}: opacity must be 0..1, scale 0..10 and fontSize 4..512");
        }
    }
}

/// <summary>A profile that cannot be used, with the key and the fix in the message.</summary>
public sealed class ProfileException(string message) : Exception(message);

/// <summary>Sizes and regions as streamers type them.</summary>
public static class Geometry
{
    public static bool TryParseSize(string? text, out int width, out int height)
    {
        width = height = 0;
        var parts = (text ?? "").Split('x', 'X');
        return parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out width)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out height)
            && width is >= 16 and <= 8192 && height is >= 16 and <= 8192;
    }

    /// <summary><c>X,Y,WIDTHxHEIGHT</c>.</summary>
    public static bool TryParseRegion(string? text, out (int X, int Y, int Width, int Height) region)
    {
        region = default;
        var parts = (text ?? "").Split(',');
        if (parts.Length != 3
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var x)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var y)
            || !TryParseSize(parts[2], out var w, out var h))
        {
            return false;
        }

        region = (x, y, w, h);
        return true;
    }
}
