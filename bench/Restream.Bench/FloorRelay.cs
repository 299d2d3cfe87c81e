using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Restream.Bench;

/// <summary>
/// bench/floor-relay.c in C#: the same forwarder (poll honouring SO_RCVLOWAT, one non-blocking recv,
/// one send, no protocol work), run by the .NET runtime with the server's settings. Beside the C
/// floor it shows what the runtime alone adds to a wake-up, apart from any code of ours.
/// usage: restream-bench floor-relay LISTEN_PORT SINK_PORT LOWAT_BYTES WAIT_MS
/// </summary>
internal static unsafe partial class FloorRelay
{
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const short PollIn = 0x1;
    private const short PollOut = 0x4;
    private const short PollErrors = 0x8 | 0x10; // POLLERR | POLLHUP

    [StructLayout(LayoutKind.Sequential)]
    private struct PollDescriptor
    {
        public int Fd;
        public short Events;
        public short ReturnedEvents;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, TimeSpec* time);

    /// <summary>
    /// RESTREAM_FLOOR_PROFILE=FILE: the forwarding thread's CPU time in each system call and between
    /// them (<c>CLOCK_THREAD_CPUTIME_ID</c>, every 10 s, appended to FILE), to set beside the same
    /// figures taken inside the server.
    /// </summary>
    private static readonly string? ProfilePath = Environment.GetEnvironmentVariable("RESTREAM_FLOOR_PROFILE");

    private static readonly string[] Phases = ["between calls", "poll", "recv", "send"];
    private static readonly long[] PhaseNanoseconds = new long[Phases.Length];
    private static readonly long[] PhaseCounts = new long[Phases.Length];
    private static long s_phaseStart;
    private static int s_phase;
    private static long s_reportAt;

    private static long ThreadCpuNanoseconds()
    {
        TimeSpec time;
        ClockGetTime(3 /* CLOCK_THREAD_CPUTIME_ID */, &time);
        return (time.Seconds * 1_000_000_000) + time.Nanoseconds;
    }

    /// <summary>Ends the current phase and starts <paramref name="phase"/> (profiling only).</summary>
    private static void Enter(int phase)
    {
        if (ProfilePath is null)
        {
            return;
        }

        var now = ThreadCpuNanoseconds();
        if (s_phaseStart != 0)
        {
            PhaseNanoseconds[s_phase] += now - s_phaseStart;
            PhaseCounts[s_phase]++;
        }

        s_phaseStart = now;
        s_phase = phase;
        if (phase == 1 && Environment.TickCount64 >= s_reportAt)
        {
            if (s_reportAt != 0)
            {
                File.AppendAllText(ProfilePath, string.Join(' ', Phases.Select((name, i) =>
                    $"{name.Replace(' ', '-')}={PhaseNanoseconds[i] / 1e6:0.0}ms/{PhaseCounts[i]}")) + "\n");
            }

            Array.Clear(PhaseNanoseconds);
            Array.Clear(PhaseCounts);
            s_reportAt = Environment.TickCount64 + 10_000;
        }
    }

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(PollDescriptor* descriptors, nuint count, int timeoutMilliseconds);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Receive(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint Send(int fd, byte* buffer, nuint length, int flags);

    public static int Run(string[] args)
    {
        if (args.Length != 4)
        {
            Console.Error.WriteLine("usage: restream-bench floor-relay LISTEN_PORT SINK_PORT LOWAT_BYTES WAIT_MS");
            return 2;
        }

        var listenPort = int.Parse(args[0], CultureInfo.InvariantCulture);
        var sinkPort = int.Parse(args[1], CultureInfo.InvariantCulture);
        var lowat = int.Parse(args[2], CultureInfo.InvariantCulture);
        var waitMs = int.Parse(args[3], CultureInfo.InvariantCulture);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, listenPort));
        listener.Listen(16);
        while (true)
        {
            var publisher = listener.Accept();
            var thread = new Thread(() =>
            {
                using var sink = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                using (publisher)
                {
                    try
                    {
                        sink.Connect(new IPEndPoint(IPAddress.Loopback, sinkPort));
                        publisher.NoDelay = true;
                        sink.NoDelay = true;
                        Forward((int)publisher.SafeHandle.DangerousGetHandle(), (int)sink.SafeHandle.DangerousGetHandle(), publisher, lowat, waitMs);
                    }
                    catch (SocketException)
                    {
                    }
                }
            }) { IsBackground = true };
            thread.Start();
        }
    }

    private static void Forward(int publisher, int sink, Socket publisherSocket, int lowat, int waitMs)
    {
        var buffer = GC.AllocateArray<byte>(256 * 1024, pinned: true);
        fixed (byte* bytes = buffer)
        {
            long forwarded = 0;
            var marked = false;
            var fds = stackalloc PollDescriptor[2];
            while (true)
            {
                fds[0] = new PollDescriptor { Fd = publisher, Events = PollIn };
                fds[1] = new PollDescriptor { Fd = sink, Events = PollIn };
                Enter(1);
                var ready = Poll(fds, 2, marked ? waitMs : -1);
                Enter(0);
                if (ready < 0 && Marshal.GetLastPInvokeError() != 4)
                {
                    return;
                }

                if (ready == 0 || (fds[0].ReturnedEvents & (PollIn | PollErrors)) != 0)
                {
                    Enter(2);
                    var got = Receive(publisher, bytes, (nuint)buffer.Length, MsgDontWait);
                    Enter(0);
                    if (got == 0 || (got < 0 && Marshal.GetLastPInvokeError() is not (11 or 4)))
                    {
                        return;
                    }

                    if (got > 0)
                    {
                        if (!SendAll(sink, bytes, got))
                        {
                            return;
                        }

                        forwarded += got;
                        if (!marked && forwarded > 64 * 1024 && lowat > 1)
                        {
                            publisherSocket.SetRawSocketOption(1 /* SOL_SOCKET */, 18 /* SO_RCVLOWAT */, BitConverter.GetBytes(lowat));
                            marked = true;
                        }
                    }
                }

                if ((fds[1].ReturnedEvents & (PollIn | PollErrors)) != 0)
                {
                    var got = Receive(sink, bytes, (nuint)buffer.Length, MsgDontWait);
                    if (got == 0 || (got < 0 && Marshal.GetLastPInvokeError() is not (11 or 4)))
                    {
                        return;
                    }

                    if (got > 0 && !SendAll(publisher, bytes, got))
                    {
                        return;
                    }
                }
            }
        }
    }

    private static bool SendAll(int fd, byte* data, nint length)
    {
        while (length > 0)
        {
            Enter(3);
            var sent = Send(fd, data, (nuint)length, MsgNoSignal);
            Enter(0);
            if (sent < 0)
            {
                var error = Marshal.GetLastPInvokeError();
                if (error == 4)
                {
                    continue;
                }

                if (error == 11)
                {
                    var descriptor = new PollDescriptor { Fd = fd, Events = PollOut };
                    Poll(&descriptor, 1, -1);
                    continue;
                }

                return false;
            }

            data += sent;
            length -= sent;
        }

        return true;
    }
}
