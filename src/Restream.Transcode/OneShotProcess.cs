using System.Diagnostics;

namespace Restream.Transcode;

/// <summary>Runs a short program (ffmpeg -encoders, pactl, a test encode) to its end and returns its exit code and output.</summary>
public static class OneShotProcess
{
    /// <summary>
    /// Standard output and error together. A program that is not installed gives (-1, "… not found");
    /// one that overruns <paramref name="timeout"/> (20 s by default) is killed and gives (-1, "… did not finish …").
    /// </summary>
    public static async Task<(int Code, string Output)> RunAsync(string program, IReadOnlyList<string> arguments, CancellationToken cancellationToken,
        TimeSpan? timeout = null)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        Process? started;
        try
        {
            started = Process.Start(info);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return (-1, $"{program} not found");
        }

        using var process = started ?? throw new InvalidOperationException($"{program} did not start");
        var limit = timeout ?? TimeSpan.FromSeconds(20);
        using var overrun = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        overrun.CancelAfter(limit);
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        try
        {
            await process.WaitForExitAsync(overrun.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            cancellationToken.ThrowIfCancellationRequested();
            return (-1, $"{program} did not finish within {limit.TotalSeconds:0} s");
        }

        return (process.ExitCode, await stdout.ConfigureAwait(false) + await stderr.ConfigureAwait(false));
    }
}
