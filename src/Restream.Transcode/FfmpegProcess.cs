using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Restream.Transcode;

/// <summary>ffmpeg's live figures, from its <c>-progress</c> output.</summary>
public sealed record FfmpegProgress(long Frame, double Fps, double Speed, string Bitrate, long DroppedFrames, long DuplicatedFrames, TimeSpan OutTime);

/// <summary>
/// Supervises one ffmpeg process: starts it with an argument list (no shell), reads <c>-progress</c>
/// into <see cref="Progress"/>, keeps the last lines of stderr as the reason when it fails, restarts it
/// with backoff, and kills it (with its children) when stopped.
/// </summary>
public sealed partial class FfmpegProcess(string name, IReadOnlyList<string> arguments, ILogger log, TimeProvider time)
{
    private readonly Queue<string> _errors = new();
    private volatile FfmpegProgress? _progress;
    private Process? _current;

    public string Name { get; } = name;
    public FfmpegProgress? Progress => _progress;
    public int Restarts { get; private set; }
    public string? LastError { get; private set; }
    public int? ProcessId => _current is { HasExited: false } p ? p.Id : null;

    /// <summary>Runs until cancelled, restarting ffmpeg when it stops on its own.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var delay = TimeSpan.FromSeconds(1);
        while (!cancellationToken.IsCancellationRequested)
        {
            var started = time.GetTimestamp();
            var code = await RunOnceAsync(cancellationToken).ConfigureAwait(false);
            if (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            Restarts++;
            LogExited(log, Name, code, LastError ?? "no error output");
            if (time.GetElapsedTime(started) > TimeSpan.FromSeconds(30))
            {
                delay = TimeSpan.FromSeconds(1); // it ran a good while: start over quickly
            }

            try
            {
                await Task.Delay(delay, time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            delay = TimeSpan.FromSeconds(Math.Min(delay.TotalSeconds * 2, 10));
        }
    }

    /// <summary>Runs ffmpeg once, to its end or until cancelled (killed then); returns its exit code.</summary>
    public async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo("ffmpeg")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = new Process { StartInfo = info };
        process.ErrorDataReceived += (_, e) => OnError(e.Data);
        try
        {
            // Tied to our life: a worker killed with -9 leaves no ffmpeg writing into the output behind.
            if (!await ChildProcesses.StartAsync(process).ConfigureAwait(false))
            {
                LastError = "ffmpeg did not start";
                return -1;
            }
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            LastError = $"ffmpeg could not be started: {e.Message}";
            return -1;
        }

        _current = process;
        process.BeginErrorReadLine();
        var progress = ReadProgressAsync(process.StandardOutput);
        try
        {
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            Kill(process);
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        }

        await progress.ConfigureAwait(false);
        _current = null;
        return process.ExitCode;
    }

    private async Task ReadProgressAsync(StreamReader output)
    {
        var values = new Dictionary<string, string>();
        while (await output.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            var eq = line.IndexOf('=');
            if (eq <= 0)
            {
                continue;
            }

            var key = line[..eq];
            var value = line[(eq + 1)..].Trim();
            if (key != "progress")
            {
                values[key] = value;
                continue;
            }

            _progress = new FfmpegProgress(
                Long(values, "frame"), Double(values, "fps"), Double(values, "speed"),
                values.GetValueOrDefault("bitrate", "N/A"), Long(values, "drop_frames"), Long(values, "dup_frames"),
                TimeSpan.FromMicroseconds(Long(values, "out_time_us")));
        }
    }

    private static long Long(Dictionary<string, string> values, string key) =>
        values.TryGetValue(key, out var v) && long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : 0;

    private static double Double(Dictionary<string, string> values, string key) =>
        values.TryGetValue(key, out var v) && double.TryParse(v.TrimEnd('x'), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : 0;

    private void OnError(string? line)
    {
        if (string.IsNullOrWhiteSpace(line))
        {
            return;
        }

        lock (_errors)
        {
            _errors.Enqueue(line);
            while (_errors.Count > 20)
            {
                _errors.Dequeue();
            }

            LastError = line.Trim();
        }
    }

    private static void Kill(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "[transcode {Name}] ffmpeg exited ({Code}): {Error}; restarting")]
    private static partial void LogExited(ILogger logger, string name, int code, string error);
}
