using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace Restream.Agent;

/// <summary>How the agent shows what it is doing.</summary>
public enum StatusMode
{
    /// <summary>A live panel (an interactive terminal).</summary>
    Panel,
    /// <summary>One JSON object per line: status every second, log lines as events.</summary>
    Json,
    /// <summary>Plain lines (output redirected to a file or a service log).</summary>
    Plain,
}

/// <summary>The agent's log: kept for the panel, or written as lines, never with the stream key in it.</summary>
public sealed class AgentLog(StatusMode mode, string? secret) : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _recent = new();
    private static readonly Lock Output = new();

    public IReadOnlyList<string> Recent => [.. _recent];

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void Dispose()
    {
    }

    internal void Write(LogLevel level, string message)
    {
        if (!string.IsNullOrEmpty(secret))
        {
            message = message.Replace(secret, "****", StringComparison.Ordinal);
        }

        var stamped = $"{DateTime.Now:HH:mm:ss} {message}";
        _recent.Enqueue(stamped);
        while (_recent.Count > 6)
        {
            _recent.TryDequeue(out _);
        }

        switch (mode)
        {
            case StatusMode.Json:
                StatusView.WriteJsonLine(new Dictionary<string, object?> { ["event"] = "log", ["level"] = level.ToString().ToLowerInvariant(), ["message"] = message });
                break;
            case StatusMode.Plain:
                lock (Output)
                {
                    Console.Error.WriteLine(stamped);
                }

                break;
        }
    }

    private sealed class Logger(AgentLog owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                owner.Write(logLevel, formatter(state, exception) + (exception is null ? "" : ": " + exception.Message));
            }
        }
    }
}

/// <summary>Shows the session's figures once a second until it stops.</summary>
public static class StatusView
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
    private static readonly Lock Output = new();

    public static async Task ShowAsync(PushSession session, AgentLog log, StatusMode mode, Task running, CancellationToken cancellationToken)
    {
        switch (mode)
        {
            case StatusMode.Panel:
                await AnsiConsole.Live(Render(session.Snapshot(), log)).AutoClear(false).StartAsync(async context =>
                {
                    while (!running.IsCompleted)
                    {
                        await Task.WhenAny(running, Task.Delay(1000, CancellationToken.None)).ConfigureAwait(false);
                        context.UpdateTarget(Render(session.Snapshot(), log));
                    }
                }).ConfigureAwait(false);
                break;
            case StatusMode.Json:
                while (!running.IsCompleted)
                {
                    await Task.WhenAny(running, Task.Delay(1000, CancellationToken.None)).ConfigureAwait(false);
                    var status = session.Snapshot();
                    WriteJsonLine(new Dictionary<string, object?> { ["event"] = "status", ["status"] = status });
                }

                break;
            default:
                var last = DateTime.MinValue;
                while (!running.IsCompleted)
                {
                    await Task.WhenAny(running, Task.Delay(1000, CancellationToken.None)).ConfigureAwait(false);
                    var s = session.Snapshot();
                    if (DateTime.UtcNow - last >= TimeSpan.FromSeconds(10) || running.IsCompleted)
                    {
                        last = DateTime.UtcNow;
                        lock (Output)
                        {
                            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                                $"{s.State}: {s.EncodeFps:0.#} fps, {s.SendKbps:0} kb/s sent, {s.DroppedFrames} dropped, {s.Reconnects} reconnects, up {TimeSpan.FromSeconds(s.UptimeSeconds):hh\\:mm\\:ss}"));
                        }
                    }
                }

                break;
        }

        _ = cancellationToken;
    }

    internal static void WriteJsonLine(object value)
    {
        var line = JsonSerializer.Serialize(value, Json);
        lock (Output)
        {
            Console.Out.WriteLine(line);
            Console.Out.Flush();
        }
    }

    private static Panel Render(AgentStatus s, AgentLog log)
    {
        var stateColour = s.State switch
        {
            "live" => "green",
            "connecting" or "starting" => "yellow",
            _ => "red",
        };
        var grid = new Grid().AddColumn(new GridColumn().NoWrap()).AddColumn();
        grid.AddRow("[bold]Status[/]", $"[{stateColour} bold]{Markup.Escape(s.State.ToUpperInvariant())}[/] → {Markup.Escape(s.Server)}");
        grid.AddRow("Live for", $"{TimeSpan.FromSeconds(s.LiveSeconds):hh\\:mm\\:ss} (agent up {TimeSpan.FromSeconds(s.UptimeSeconds):hh\\:mm\\:ss})");
        grid.AddRow("Capture", string.Create(CultureInfo.InvariantCulture, $"{s.CaptureFps:0.#} fps"));
        grid.AddRow("Encode", string.Create(CultureInfo.InvariantCulture, $"{s.EncodeFps:0.#} fps with {Markup.Escape(s.Encoder)} (speed {s.Speed:0.00}x)"));
        grid.AddRow("Upload", string.Create(CultureInfo.InvariantCulture, $"{s.SendKbps:0} kb/s ({s.BytesSent / 1_000_000.0:0.0} MB sent)"));
        grid.AddRow("Dropped", $"{s.DroppedFrames} frames ({s.DuplicatedFrames} duplicated)");
        grid.AddRow("Reconnects", $"{s.Reconnects} network, {s.CaptureRestarts} capture");
        if (!string.IsNullOrEmpty(s.LastError))
        {
            grid.AddRow("[red]Problem[/]", Markup.Escape(s.LastError));
        }

        var recent = log.Recent;
        if (recent.Count > 0)
        {
            grid.AddRow("", "");
            foreach (var line in recent)
            {
                grid.AddRow("[grey]log[/]", $"[grey]{Markup.Escape(line)}[/]");
            }
        }

        return new Panel(grid).Header("[bold] Restream agent [/]— Ctrl+C to stop").RoundedBorder();
    }
}
