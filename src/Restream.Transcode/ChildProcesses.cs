using System.Collections.Concurrent;
using System.Diagnostics;

namespace Restream.Transcode;

/// <summary>
/// Starts child processes that die with this one, even when it is killed outright (kill -9, OOM
/// killer): on Linux each child is started through util-linux's <c>setpriv --pdeathsig KILL</c>.
/// The kernel sends that signal when the *thread* that forked the child ends, so every child is
/// forked from one dedicated thread that lives as long as the process.
/// </summary>
public static class ChildProcesses
{
    private const string SetPriv = "/usr/bin/setpriv";
    private static readonly BlockingCollection<(Process Process, TaskCompletionSource<bool> Started)> Requests = [];
    private static readonly Lazy<Thread> Launcher = new(() =>
    {
        var thread = new Thread(Run) { IsBackground = true, Name = "child-process-launcher" };
        thread.Start();
        return thread;
    });

    /// <summary>Whether children are tied to this process's life here.</summary>
    public static bool DieWithParent => OperatingSystem.IsLinux() && File.Exists(SetPriv);

    /// <summary>Starts <paramref name="process"/> (its StartInfo as the caller set it) so that it dies with us.</summary>
    public static Task<bool> StartAsync(Process process)
    {
        if (!DieWithParent)
        {
            return Task.FromResult(process.Start());
        }

        var info = process.StartInfo;
        var program = info.FileName;
        var arguments = info.ArgumentList.ToList();
        info.FileName = SetPriv;
        info.ArgumentList.Clear();
        foreach (var a in (string[])["--pdeathsig", "KILL", "--", program, .. arguments])
        {
            info.ArgumentList.Add(a);
        }

        var started = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = Launcher.Value;
        Requests.Add((process, started));
        return started.Task;
    }

    private static void Run()
    {
        foreach (var (process, started) in Requests.GetConsumingEnumerable())
        {
            try
            {
                started.SetResult(process.Start());
            }
            catch (Exception e)
            {
                started.SetException(e);
            }
        }
    }
}
