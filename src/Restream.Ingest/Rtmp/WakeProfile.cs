using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Restream.Ingest.Rtmp;

/// <summary>
/// Where a receive thread's CPU time goes: inside each kind of system call (<c>poll</c>, <c>recv</c>,
/// <c>sendmsg</c>, <c>setsockopt</c>) and in everything between them, which is our own code: the
/// chunk parser (<c>parse</c>), frame creation and the hub's publish (<c>hub</c>), the planner's decision
/// (<c>plan</c>), the sends to the destinations around their system calls (<c>dispatch</c>), and the
/// rest (<c>ours</c>: the pipe reader, the async layers, the marks). Each phase is timed with the
/// thread's CPU clock (<c>CLOCK_THREAD_CPUTIME_ID</c>), so a thread that is preempted or asleep is not
/// charged; every 10 s a line with each phase's milliseconds and count is appended to the file
/// <c>RESTREAM_WAKE_PROFILE</c> names.
/// <para>
/// For measuring, not for running: the server's calls are compiled in only with
/// <c>dotnet build -c Release -p:RestreamWakeProfile=true</c> (they are <see cref="ConditionalAttribute"/>
/// methods, so a normal build has no trace of them on the hot path). The bench's floor forwarder
/// calls <see cref="Begin"/> and <see cref="Switch"/> directly. Each switch is one system call of its own
/// (0.5–0.9 µs on the bench's VM), charged to the phase it ends. Linux only.
/// </para>
/// </summary>
internal static unsafe partial class WakeProfile
{
    public enum Phase
    {
        Ours,
        Poll,
        Receive,
        Send,
        SetOption,
        Parse,
        Hub,
        Plan,
        Dispatch,
    }

    private static readonly string[] Names = ["ours", "poll", "recv", "sendmsg", "setsockopt", "parse", "hub", "plan", "dispatch"];
    private static readonly string? Path = Environment.GetEnvironmentVariable("RESTREAM_WAKE_PROFILE");

    [ThreadStatic] private static long[]? t_nanoseconds;
    [ThreadStatic] private static long[]? t_counts;
    [ThreadStatic] private static long t_phaseStart;
    [ThreadStatic] private static Phase t_phase;
    [ThreadStatic] private static long t_reportAt;
    [ThreadStatic] private static Phase t_outer;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, TimeSpec* time);

    private const int ThreadCpuClock = 3; // CLOCK_THREAD_CPUTIME_ID

    /// <summary>Profiles the calling thread from now on (in a build with <c>RestreamWakeProfile=true</c>).</summary>
    [Conditional("RESTREAM_WAKE_PROFILE")]
    public static void StartThread() => Begin();

    /// <summary>The calling thread enters <paramref name="phase"/> (in a build with <c>RestreamWakeProfile=true</c>).</summary>
    [Conditional("RESTREAM_WAKE_PROFILE")]
    public static void Enter(Phase phase) => Switch(phase);

    /// <summary>The calling thread makes a system call (<paramref name="phase"/>); <see cref="Return"/> goes back to the phase it was in.</summary>
    [Conditional("RESTREAM_WAKE_PROFILE")]
    public static void Call(Phase phase)
    {
        t_outer = t_phase;
        Switch(phase);
    }

    /// <summary>The system call <see cref="Call"/> began has returned.</summary>
    [Conditional("RESTREAM_WAKE_PROFILE")]
    public static void Return() => Switch(t_outer);

    /// <summary>Profiles the calling thread from now on, when <c>RESTREAM_WAKE_PROFILE</c> names a file.</summary>
    public static void Begin()
    {
        if (Path is null || !OperatingSystem.IsLinux())
        {
            return;
        }

        t_nanoseconds = new long[Names.Length];
        t_counts = new long[Names.Length];
        t_phase = Phase.Ours;
        t_phaseStart = ThreadCpuNanoseconds();
        t_reportAt = Environment.TickCount64 + 10_000;
    }

    /// <summary>Ends the calling thread's current phase and starts <paramref name="phase"/>.</summary>
    public static void Switch(Phase phase)
    {
        if (t_nanoseconds is not { } nanoseconds)
        {
            return;
        }

        var now = ThreadCpuNanoseconds();
        nanoseconds[(int)t_phase] += now - t_phaseStart;
        t_counts![(int)t_phase]++;
        t_phaseStart = now;
        t_phase = phase;
        if (phase == Phase.Poll && Environment.TickCount64 >= t_reportAt)
        {
            Report(nanoseconds, t_counts);
            t_reportAt = Environment.TickCount64 + 10_000;
        }
    }

    private static void Report(long[] nanoseconds, long[] counts)
    {
        var line = new StringBuilder($"{DateTime.UtcNow:HH:mm:ss} thread {Environment.CurrentManagedThreadId}:");
        for (var i = 0; i < Names.Length; i++)
        {
            line.Append(CultureInfo.InvariantCulture, $" {Names[i]}={nanoseconds[i] / 1e6:0.0}ms/{counts[i]}");
        }

        File.AppendAllText(Path!, line.Append('\n').ToString());
        Array.Clear(nanoseconds);
        Array.Clear(counts);
    }

    private static long ThreadCpuNanoseconds()
    {
        TimeSpec time;
        ClockGetTime(ThreadCpuClock, &time);
        return (time.Seconds * 1_000_000_000) + time.Nanoseconds;
    }
}
