using System.Globalization;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>
/// A streamer's desktop without a screen: Xvfb with a black root and a real window (xclock), and a
/// PulseAudio server whose null sink plays a 440 Hz tone, so "what you hear" is its monitor. Each
/// runs on its own display number and socket, and is stopped on dispose.
/// </summary>
public sealed class X11Desktop : IAsyncDisposable
{
    public const string WindowTitle = "restream-test-clock";
    public const string SinkName = "restream_test";
    private readonly List<ExternalProcess> _processes = [];

    public string Display { get; private set; } = "";
    public string PulseServer { get; private set; } = "";
    public string Directory { get; } = TestPorts.NewTempDirectory("desktop");

    /// <summary>The variables a program needs to see this desktop and this sound server.</summary>
    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["DISPLAY"] = Display,
        ["PULSE_SERVER"] = PulseServer,
        ["XDG_RUNTIME_DIR"] = Directory,
        ["HOME"] = Directory,
        ["WAYLAND_DISPLAY"] = "",
        ["XDG_SESSION_TYPE"] = "x11",
    };

    public async Task StartAsync()
    {
        var number = FreeDisplayNumber();
        Display = $":{number}";
        _processes.Add(ExternalProcess.Start("Xvfb", [Display, "-screen", "0", "1280x720x24", "-nolisten", "tcp", "-br", "-noreset"]));
        if (!await TestPorts.EventuallyAsync(() => File.Exists($"/tmp/.X11-unix/X{number}"), TimeSpan.FromSeconds(10)))
        {
            throw new InvalidOperationException($"Xvfb {Display} did not start:\n{_processes[0].Tail()}");
        }

        _processes.Add(ExternalProcess.Start("xclock", ["-display", Display, "-geometry", "300x300+50+60", "-update", "1", "-title", WindowTitle]));

        var socket = Path.Combine(Directory, "pulse.sock");
        PulseServer = "unix:" + socket;
        _processes.Add(ExternalProcess.Start("pulseaudio",
        [
            "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no", "--system=false",
            $"--load=module-native-protocol-unix auth-anonymous=1 socket={socket}",
            $"--load=module-null-sink sink_name={SinkName}",
        ], environment: Environment));
        if (!await TestPorts.EventuallyAsync(() => File.Exists(socket), TimeSpan.FromSeconds(10)))
        {
            throw new InvalidOperationException($"pulseaudio did not start:\n{_processes[^1].Tail()}");
        }

        await ExternalProcess.RunAsync("pactl", ["--server", PulseServer, "set-default-sink", SinkName], TimeSpan.FromSeconds(10));
        // What you hear: a steady tone played into the sink, for as long as the desktop lives.
        _processes.Add(ExternalProcess.Start("ffmpeg",
            ["-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
             "-f", "pulse", "-device", SinkName, "tone"], environment: Environment));
        if (!await TestPorts.EventuallyAsync(() => WindowListed(), TimeSpan.FromSeconds(10), 200))
        {
            throw new InvalidOperationException("xclock did not map its window");
        }
    }

    private bool WindowListed()
    {
        var (_, output) = ExternalProcess.RunAsync("xwininfo", ["-display", Display, "-root", "-tree"], TimeSpan.FromSeconds(5)).GetAwaiter().GetResult();
        return output.Contains(WindowTitle, StringComparison.Ordinal);
    }

    private static int FreeDisplayNumber()
    {
        for (var n = 90 + Random.Shared.Next(100); ; n++)
        {
            if (!File.Exists($"/tmp/.X11-unix/X{n}") && !File.Exists($"/tmp/.X{n}-lock"))
            {
                return n;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _processes.Count - 1; i >= 0; i--)
        {
            await _processes[i].DisposeAsync();
        }
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"desktop {Display}, pulse {PulseServer}");
}
