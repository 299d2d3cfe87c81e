using System.CommandLine;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Restream.Agent;
using Restream.Agent.Sources;
using Restream.Transcode;
using Spectre.Console;

var json = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, WriteIndented = true };
var jsonOption = new Option<bool>("--json") { Description = "Machine-readable output (one JSON object per line while pushing)" };
var profileOption = new Option<string?>("--profile", "-p") { Description = "Profile file (write one with: restream-agent init)" };

var root = new RootCommand("Restream agent: capture your screen, a window or a game and your system sound, encode once, and push one feed to your Restream server.");

// ---- sources
var sources = new Command("sources", "List screens, windows and audio devices you can capture") { jsonOption };
sources.SetAction(async (parse, ct) =>
{
    var report = await SourceCatalog.DiscoverAsync(ct);
    if (parse.GetValue(jsonOption))
    {
        Console.WriteLine(JsonSerializer.Serialize(report, json));
        return 0;
    }

    var screens = new Table().Title("Screens").AddColumns("#", "Name", "Position", "Size", "");
    foreach (var d in report.Displays)
    {
        screens.AddRow($"{d.Index}", Markup.Escape(d.Name), $"{d.X},{d.Y}", $"{d.Width}x{d.Height}", d.Primary ? "primary" : "");
    }

    var windows = new Table().Title("Windows").AddColumns("Id", "Title", "Program", "Size");
    foreach (var w in report.Windows)
    {
        windows.AddRow($"0x{w.Id:x}", Markup.Escape(w.Title), Markup.Escape(w.Process ?? ""), $"{w.Width}x{w.Height}");
    }

    var audio = new Table().Title("Audio").AddColumns("Name", "What", "");
    foreach (var a in report.Audio)
    {
        audio.AddRow(Markup.Escape(a.Name), Markup.Escape(a.Description), a.Default ? "default" : "");
    }

    AnsiConsole.Write(screens);
    AnsiConsole.Write(windows);
    AnsiConsole.Write(audio);
    foreach (var note in report.Notes)
    {
        AnsiConsole.MarkupLine($"[yellow]![/] {Markup.Escape(note)}");
    }

    return 0;
});
root.Subcommands.Add(sources);

// ---- encoders
var encoders = new Command("encoders", "Find which video encoders work on this PC (a tiny real encode each)") { jsonOption };
encoders.SetAction(async (parse, ct) =>
{
    var report = await AnsiConsole.Status().StartAsync("Trying each encoder…", _ => EncoderProbe.ProbeAsync(ct));
    var chosen = Encoders.Choose("auto", report.Encoders);
    if (parse.GetValue(jsonOption))
    {
        Console.WriteLine(JsonSerializer.Serialize(new { report.Encoders, Chosen = chosen }, json));
        return 0;
    }

    var table = new Table().AddColumns("Encoder", "Works", "Why not");
    foreach (var e in report.Encoders)
    {
        table.AddRow(e.Name, e.Works ? "[green]yes[/]" : "[grey]no[/]", Markup.Escape(e.Reason ?? ""));
    }

    AnsiConsole.Write(table);
    AnsiConsole.MarkupLine($"The agent will use [bold]{chosen}[/] (set encoder.name in the profile to choose another).");
    return 0;
});
root.Subcommands.Add(encoders);

// ---- init
var serverOption = new Option<string?>("--server", "-s") { Description = "Ingest URL without the key, e.g. rtmp://restream.example.com/live" };
var windowOption = new Option<string?>("--window", "-w") { Description = "Capture this window (part of its title, or its id from 'sources')" };
var forceOption = new Option<bool>("--force") { Description = "Overwrite an existing profile" };
var init = new Command("init", "Write a commented profile to edit") { profileOption, serverOption, windowOption, forceOption };
init.SetAction(parse =>
{
    var path = parse.GetValue(profileOption) ?? "restream-agent.json";
    if (File.Exists(path) && !parse.GetValue(forceOption))
    {
        Console.Error.WriteLine($"{path} exists already (add --force to overwrite it)");
        return 2;
    }

    var window = parse.GetValue(windowOption);
    File.WriteAllText(path, ProfileTemplate.Render(parse.GetValue(serverOption) ?? "rtmp://localhost:1935/live", window is null ? "screen" : "window", window));
    AnsiConsole.MarkupLine($"Wrote [bold]{Markup.Escape(path)}[/]. Next: [bold]restream-agent key set[/], then [bold]restream-agent push -p {Markup.Escape(path)}[/]");
    return 0;
});
root.Subcommands.Add(init);

// ---- key
var key = new Command("key", "Keep your stream key on this PC (never shown again)");
var keySet = new Command("set", "Save the stream key (typed without echo, or piped in)");
keySet.SetAction(_ =>
{
    var value = StreamKeyStore.ReadHidden();
    if (value.Length == 0)
    {
        Console.Error.WriteLine("no key given");
        return 2;
    }

    StreamKeyStore.Save(value);
    Console.Error.WriteLine($"Saved {StreamKeyStore.Mask(value)} to {StreamKeyStore.DefaultPath} (readable by you only)");
    return 0;
});
var keyClear = new Command("clear", "Forget the saved stream key");
keyClear.SetAction(_ =>
{
    File.Delete(StreamKeyStore.DefaultPath);
    Console.Error.WriteLine("Stream key forgotten");
    return 0;
});
key.Subcommands.Add(keySet);
key.Subcommands.Add(keyClear);
root.Subcommands.Add(key);

// ---- doctor
var doctor = new Command("doctor", "Check ffmpeg, capture, sound, encoders, stream key and the road to the server") { profileOption, serverOption };
doctor.SetAction(async (parse, ct) =>
{
    AgentProfile? profile = null;
    try
    {
        profile = LoadProfile(parse.GetValue(profileOption), required: false);
        if (parse.GetValue(serverOption) is { } server)
        {
            profile = (profile ?? new AgentProfile()) with { Server = server };
        }
    }
    catch (ProfileException e)
    {
        AnsiConsole.MarkupLine($"[red]✗ profile[/] {Markup.Escape(e.Message)}");
    }

    var checks = await AnsiConsole.Status().StartAsync("Checking…", _ => Doctor.RunAsync(profile, ct));
    foreach (var c in checks)
    {
        var (mark, colour) = c.Result switch
        {
            DoctorResult.Ok => ("✓", "green"),
            DoctorResult.Warning => ("!", "yellow"),
            _ => ("✗", "red"),
        };
        AnsiConsole.MarkupLine($"[{colour}]{mark} {Markup.Escape(c.Name)}[/]: {Markup.Escape(c.Detail)}");
        if (c.Fix is not null)
        {
            AnsiConsole.MarkupLine($"    [grey]fix:[/] {Markup.Escape(c.Fix)}");
        }
    }

    return checks.Any(c => c.Result == DoctorResult.Failed) ? 1 : 0;
});
root.Subcommands.Add(doctor);

// ---- push
var sourceOption = new Option<string?>("--source") { Description = "screen, window, region or test" };
var regionOption = new Option<string?>("--region") { Description = "X,Y,WIDTHxHEIGHT of the desktop" };
var monitorOption = new Option<int?>("--monitor") { Description = "Monitor index from 'sources'" };
var sizeOption = new Option<string?>("--size") { Description = "Output size, e.g. 1920x1080" };
var fpsOption = new Option<int?>("--fps") { Description = "Frames per second" };
var encoderOption = new Option<string?>("--encoder") { Description = "auto, h264_nvenc, h264_qsv, h264_amf, h264_vaapi or libx264" };
var bitrateOption = new Option<int?>("--video-kbps") { Description = "Video bitrate in kb/s" };
var audioOption = new Option<string?>("--audio") { Description = "System sound: default, none, or a device name" };
var micOption = new Option<string?>("--mic") { Description = "Microphone device to mix in" };
var keyEnvOption = new Option<string?>("--key-env") { Description = "Environment variable holding the stream key" };
var overlayOption = new Option<string[]>("--overlay")
{
    Description = "text:WORDS[@POSITION], textfile:PATH[@POSITION] or image:PNG[@POSITION]; POSITION is top-left, top-right, bottom-left, bottom-right, center or X,Y",
    AllowMultipleArgumentsPerToken = false,
};
var dryRunOption = new Option<bool>("--dry-run") { Description = "Print the ffmpeg command and stop" };
var fallbackOption = new Option<string[]>("--fallback-server") { Description = "Another ingest to switch to when the server cannot be reached (repeatable)" };
var trustOption = new Option<string?>("--trust-cert") { Description = "PEM certificate to trust for rtmps:// (self-signed server or private CA)" };
var push = new Command("push", "Go live: capture, encode and push to the server until Ctrl+C")
{
    profileOption, serverOption, sourceOption, windowOption, regionOption, monitorOption, sizeOption, fpsOption, encoderOption,
    bitrateOption, audioOption, micOption, keyEnvOption, overlayOption, jsonOption, dryRunOption, trustOption, fallbackOption,
};
push.SetAction(async (parse, ct) =>
{
    AgentProfile profile;
    try
    {
        profile = LoadProfile(parse.GetValue(profileOption), required: false) ?? new AgentProfile();
        profile = Overrides(profile, parse);
        profile.Validate();
    }
    catch (ProfileException e)
    {
        Console.Error.WriteLine(e.Message);
        return 2;
    }

    var mode = parse.GetValue(jsonOption) ? StatusMode.Json
        : !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive ? StatusMode.Panel : StatusMode.Plain;
    CapturePlan plan;
    string streamKey;
    try
    {
        streamKey = parse.GetValue(dryRunOption) ? "dry-run" : StreamKeyStore.Resolve(profile);
        plan = await CapturePlanner.PlanAsync(profile, ct);
    }
    catch (Exception e) when (e is ProfileException or SourceException)
    {
        Console.Error.WriteLine(e.Message);
        return 2;
    }

    var log = new AgentLog(mode, streamKey);
    using var logs = LoggerFactory.Create(b => b.AddProvider(log).SetMinimumLevel(LogLevel.Information));
    var session = new PushSession(plan, new Uri(profile.Server), streamKey, profile.BufferSeconds, TimeProvider.System, logs,
        profile.TrustedCertificateFile, [.. profile.FallbackServers.Select(f => new Uri(f))]);
    if (parse.GetValue(dryRunOption))
    {
        Console.WriteLine("ffmpeg " + string.Join(' ', session.Arguments.Select(a => a.Contains(' ', StringComparison.Ordinal) || a.Contains(';', StringComparison.Ordinal) ? $"\"{a}\"" : a)));
        return 0;
    }

    logs.CreateLogger("agent").LogInformation("pushing {Source} with {Encoder} at {Kbps} kb/s to {Server}", Describe(plan.Video), plan.Encoder, profile.Encoder.VideoKbps, profile.Server);
    var running = session.RunAsync(ct);
    await StatusView.ShowAsync(session, log, mode, running, ct);
    await running;
    var final = session.Snapshot();
    if (mode == StatusMode.Json)
    {
        StatusView.WriteJsonLine(new Dictionary<string, object?> { ["event"] = "stopped", ["status"] = final });
    }
    else
    {
        Console.Error.WriteLine($"Stopped. Sent {final.FramesSent} frames ({final.BytesSent / 1_000_000.0:0.0} MB), {final.Reconnects} reconnects.");
    }

    return 0;
});
root.Subcommands.Add(push);

return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(8) });

AgentProfile? LoadProfile(string? path, bool required)
{
    if (path is null)
    {
        return required ? throw new ProfileException("give a profile with --profile (write one with: restream-agent init)") : null;
    }

    return AgentProfile.Load(path);
}

AgentProfile Overrides(AgentProfile p, ParseResult parse)
{
    var video = p.Video;
    video = parse.GetValue(sourceOption) is { } s ? video with { Source = s } : video;
    video = parse.GetValue(windowOption) is { } w ? video with { Window = w, Source = parse.GetValue(sourceOption) ?? "window" } : video;
    video = parse.GetValue(regionOption) is { } r ? video with { Region = r, Source = parse.GetValue(sourceOption) ?? "region" } : video;
    video = parse.GetValue(monitorOption) is { } m ? video with { Monitor = m } : video;
    video = parse.GetValue(sizeOption) is { } size ? video with { Size = size } : video;
    video = parse.GetValue(fpsOption) is { } fps ? video with { Fps = fps } : video;
    var encoder = p.Encoder;
    encoder = parse.GetValue(encoderOption) is { } e ? encoder with { Name = e } : encoder;
    encoder = parse.GetValue(bitrateOption) is { } kbps ? encoder with { VideoKbps = kbps } : encoder;
    var audio = p.Audio;
    audio = parse.GetValue(audioOption) is { } a ? audio with { System = a } : audio;
    audio = parse.GetValue(micOption) is { } mic ? audio with { Microphone = mic } : audio;
    var overlays = p.Overlays.Concat((parse.GetValue(overlayOption) ?? []).Select(OverlayFromCommandLine)).ToList();
    return p with
    {
        Server = parse.GetValue(serverOption) ?? p.Server,
        KeyEnv = parse.GetValue(keyEnvOption) ?? p.KeyEnv,
        TrustedCertificateFile = parse.GetValue(trustOption) ?? p.TrustedCertificateFile,
        FallbackServers = parse.GetValue(fallbackOption) is { Length: > 0 } fallbacks ? fallbacks : p.FallbackServers,
        Video = video,
        Encoder = encoder,
        Audio = audio,
        Overlays = overlays,
    };
}

static OverlaySettings OverlayFromCommandLine(string spec)
{
    var colon = spec.IndexOf(':', StringComparison.Ordinal);
    if (colon <= 0)
    {
        throw new ProfileException($"--overlay '{spec}': write text:WORDS, textfile:PATH or image:PNG, optionally @POSITION");
    }

    var kind = spec[..colon];
    var rest = spec[(colon + 1)..];
    var position = "top-left";
    var at = rest.LastIndexOf('@');
    if (at >= 0 && OverlayPosition.TryParse(rest[(at + 1)..], out _))
    {
        position = rest[(at + 1)..];
        rest = rest[..at];
    }

    return kind switch
    {
        "text" => new OverlaySettings { Type = "text", Text = rest, Position = position },
        "textfile" => new OverlaySettings { Type = "text", TextFile = rest, Position = position },
        "image" => new OverlaySettings { Type = "image", Image = rest, Position = position },
        _ => throw new ProfileException($"--overlay '{spec}': '{kind}' is not text, textfile or image"),
    };
}

static string Describe(VideoInput input) => input switch
{
    X11Window w => $"window 0x{w.WindowId:x} ({w.Width}x{w.Height})",
    X11Area a => $"screen area {a.Width}x{a.Height}+{a.X},{a.Y}",
    DdaDisplay d => $"display {d.OutputIndex}",
    GfxWindow g => $"window 0x{g.Handle:x}",
    GdiCapture g => g.WindowTitle is null ? "desktop" : $"window \"{g.WindowTitle}\"",
    TestPattern => "test pattern",
    _ => input.ToString()!,
};
