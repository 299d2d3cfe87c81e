using System.Globalization;

namespace Restream.Bench;

/// <summary>
/// The CPU time of a process tree, to the nanosecond: the sum of every thread's time on a CPU
/// (<c>/proc/PID/task/TID/schedstat</c>). <c>/proc/PID/stat</c> counts in 10 ms clock ticks, which is
/// a 5–10 % step on the 0.2 s a relay spends in a 30 s window at one destination. A thread that
/// exits keeps the time it had at the last look: the clock looks every 100 ms, so at most that much
/// of a dying thread's time is lost.
/// </summary>
internal sealed class ThreadClock : IDisposable
{
    private readonly Func<IEnumerable<int>> _processes;
    private readonly Dictionary<int, long> _threads = [];
    private readonly Timer _timer;
    private readonly object _gate = new();
    private int[] _pids = [];
    private long _pidsAt;
    private long _exited;

    public ThreadClock(Func<IEnumerable<int>> processes)
    {
        _processes = processes;
        _timer = new Timer(_ => Look(), null, TimeSpan.Zero, TimeSpan.FromMilliseconds(100));
    }

    /// <summary>CPU seconds of every thread the tree has had since the clock started.</summary>
    public double Read()
    {
        lock (_gate)
        {
            Look();
            return (_exited + _threads.Values.Sum()) / 1e9;
        }
    }

    private void Look()
    {
        lock (_gate)
        {
            if (Environment.TickCount64 - _pidsAt > 2000)
            {
                _pids = [.. _processes()]; // walking /proc is the dear part: the tree rarely changes
                _pidsAt = Environment.TickCount64;
            }

            var alive = new HashSet<int>();
            foreach (var pid in _pids)
            {
                IEnumerable<string> tasks;
                try
                {
                    tasks = Directory.GetDirectories($"/proc/{pid}/task");
                }
                catch (IOException)
                {
                    continue;
                }

                foreach (var task in tasks)
                {
                    try
                    {
                        var text = File.ReadAllText(Path.Combine(task, "schedstat"));
                        var tid = int.Parse(Path.GetFileName(task), CultureInfo.InvariantCulture);
                        _threads[tid] = long.Parse(text.AsSpan(0, text.IndexOf(' ')), CultureInfo.InvariantCulture);
                        alive.Add(tid);
                    }
                    catch (IOException)
                    {
                    }
                }
            }

            foreach (var tid in _threads.Keys.Where(t => !alive.Contains(t)).ToList())
            {
                _exited += _threads[tid];
                _threads.Remove(tid);
            }
        }
    }

    public void Dispose() => _timer.Dispose();
}
