using System.Text;

namespace Restream.Agent;

/// <summary>
/// Where the stream key lives: the environment variable the profile names, else a file in the
/// user's own config folder readable by that user only (<c>restream-agent key set</c>). The key is
/// never printed, logged or written into a profile.
/// </summary>
public static class StreamKeyStore
{
    public static string DefaultPath
    {
        get
        {
            var config = OperatingSystem.IsWindows()
                ? Environment.GetFolderPath(Environment.SpecialFolder.ApplicationData)
                : Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } xdg
                    ? xdg
                    : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
            return Path.Combine(config, "restream", "stream-key");
        }
    }

    public static string Resolve(AgentProfile profile, string? storePath = null)
    {
        if (Environment.GetEnvironmentVariable(profile.KeyEnv) is { Length: > 0 } fromEnv)
        {
            return fromEnv.Trim();
        }

        var path = storePath ?? DefaultPath;
        if (File.Exists(path) && File.ReadAllText(path).Trim() is { Length: > 0 } stored)
        {
            return stored;
        }

        throw new ProfileException($"no stream key: set the environment variable {profile.KeyEnv}, or save it once with: restream-agent key set");
    }

    public static void Save(string key, string? storePath = null)
    {
        var path = storePath ?? DefaultPath;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite; // 0600 from the first byte
        }

        using (var file = new FileStream(path, options))
        {
            file.Write(Encoding.UTF8.GetBytes(key.Trim()));
        }

        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    /// <summary>Reads a key from the terminal without showing it (or from a pipe).</summary>
    public static string ReadHidden()
    {
        if (Console.IsInputRedirected)
        {
            return Console.In.ReadLine()?.Trim() ?? "";
        }

        Console.Error.Write("Stream key (not shown): ");
        var key = new StringBuilder();
        while (true)
        {
            var c = Console.ReadKey(intercept: true);
            if (c.Key == ConsoleKey.Enter)
            {
                break;
            }

            if (c.Key == ConsoleKey.Backspace && key.Length > 0)
            {
                key.Length--;
            }
            else if (!char.IsControl(c.KeyChar))
            {
                key.Append(c.KeyChar);
            }
        }

        Console.Error.WriteLine();
        return key.ToString().Trim();
    }

    /// <summary>A key as it may be shown: its first four characters.</summary>
    public static string Mask(string key) => key.Length <= 4 ? "****" : key[..4] + new string('*', Math.Min(12, key.Length - 4));
}

/// <summary>The commented profile <c>restream-agent init</c> writes.</summary>
public static class ProfileTemplate
{
    public static string Render(string server, string source, string? window) => $$"""
        // Restream agent profile. Comments are allowed; every key is optional.
        // Use it with: restream-agent push --profile <this file>
        {
          // Your Restream ingest, without the stream key: rtmp://host/live, rtmps://host:1936/live or srt://host:9000
          "server": "{{server}}",
          // Other ingests to switch to, in order, when the server cannot be reached (same key)
          "fallbackServers": [],
          // The stream key is never written here. It is read from this environment variable,
          // or from the key store (save it once with: restream-agent key set).
          "keyEnv": "RESTREAM_STREAM_KEY",
          "video": {
            // screen, window, region or test (a test pattern)
            "source": "{{source}}",
            // For "window": part of the window title, or its id (see: restream-agent sources)
            "window": {{(window is null ? "null" : $"\"{window}\"")}},
            // For "screen": which monitor (see: restream-agent sources)
            "monitor": 0,
            // For "region": X,Y,WIDTHxHEIGHT
            "region": null,
            // What viewers get; the capture is scaled to fit (empty: keep the captured size)
            "size": "1280x720",
            "fps": 30,
            "cursor": true
          },
          "audio": {
            // "default" is what you hear; a device name from 'restream-agent sources', or "none"
            "system": "default",
            // A microphone to mix in, e.g. "alsa_input.usb-Blue_Yeti-00.analog-stereo", or null
            "microphone": null,
            "microphoneVolume": 1.0
          },
          "encoder": {
            // auto picks NVENC, Quick Sync, AMF or VA-API when they work here, else libx264
            "name": "auto",
            "videoKbps": 6000,
            "audioKbps": 160,
            "keyframeSeconds": 2,
            "bFrames": 0,
            // libx264 speed: auto picks from your CPU's cores (superfast … fast), or name one
            "x264Preset": "auto"
          },
          // Drawn in this order over the picture. Text: "text" or "textFile" (re-read live).
          "overlays": [
            // { "type": "text", "textFile": "/home/me/now-playing.txt", "position": "bottom-left", "fontSize": 28 },
            // { "type": "image", "image": "/home/me/logo.png", "position": "top-right", "scale": 0.5, "opacity": 0.8 }
          ],
          // Seconds kept while the network is slow; beyond that whole GOPs are dropped, the stream goes on.
          "bufferSeconds": 10
        }

        """;
}
