using System.Diagnostics;
using System.Text.Json;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>The real agent program (<c>restream-agent push … --json</c>) started as a streamer would, with its status lines read back.</summary>
public sealed class AgentProcess : IAsyncDisposable
{
    private readonly ExternalProcess _process;

    private AgentProcess(ExternalProcess process)
    {
        _process = process;
    }

    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;
    public string Output => _process.Output;

    public static string Dll => Path.Combine(AppContext.BaseDirectory, "restream-agent.dll");

    public static AgentProcess Start(IEnumerable<string> arguments, IReadOnlyDictionary<string, string> environment) =>
        new(ExternalProcess.Start("dotnet", [Dll, .. arguments], environment: environment));

    public static async Task<(int ExitCode, string Output)> RunAsync(IEnumerable<string> arguments, IReadOnlyDictionary<string, string> environment, TimeSpan timeout)
    {
        await using var process = ExternalProcess.Start("dotnet", [Dll, .. arguments], environment: environment);
        var code = await process.WaitAsync(timeout);
        return (code, process.Output);
    }

    /// <summary>Every <c>{"event":"status"}</c> line so far, newest last.</summary>
    public IReadOnlyList<JsonElement> Statuses()
    {
        var list = new List<JsonElement>();
        foreach (var line in Output.Split('\n'))
        {
            if (!line.StartsWith("{\"event\":\"status\"", StringComparison.Ordinal))
            {
                continue;
            }

            try
            {
                using var doc = JsonDocument.Parse(line);
                list.Add(doc.RootElement.GetProperty("status").Clone());
            }
            catch (JsonException)
            {
                // a line still being written
            }
        }

        return list;
    }

    public JsonElement? Last => Statuses() is { Count: > 0 } s ? s[^1] : null;

    public string? State => Last?.GetProperty("state").GetString();

    /// <summary>The ffmpeg the agent runs (a child process), if any.</summary>
    public int? FfmpegChild() => ProcessTree.ChildNamed(Id, "ffmpeg");

    /// <summary>Ctrl+C, as a streamer stops it.</summary>
    public void Interrupt() => Process.Start("kill", ["-INT", Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();

    /// <summary>kill -9: the agent gets no chance to clean up.</summary>
    public void KillHard() => Process.Start("kill", ["-KILL", Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();

    public Task<int> WaitAsync(TimeSpan timeout) => _process.WaitAsync(timeout);

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
