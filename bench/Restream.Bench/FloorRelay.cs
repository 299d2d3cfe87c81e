using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Restream.Ingest.Rtmp;

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
        WakeProfile.Begin(); // RESTREAM_WAKE_PROFILE=FILE: CPU time per system call, as in the server
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
                WakeProfile.Switch(WakeProfile.Phase.Poll);
                var ready = Poll(fds, 2, marked ? waitMs : -1);
                WakeProfile.Switch(WakeProfile.Phase.Ours);
                if (ready < 0 && Marshal.GetLastPInvokeError() != 4)
                {
                    return;
                }

                if (ready == 0 || (fds[0].ReturnedEvents & (PollIn | PollErrors)) != 0)
                {
                    WakeProfile.Switch(WakeProfile.Phase.Receive);
                    var got = Receive(publisher, bytes, (nuint)buffer.Length, MsgDontWait);
                    WakeProfile.Switch(WakeProfile.Phase.Ours);
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
            WakeProfile.Switch(WakeProfile.Phase.Send);
            var sent = Send(fd, data, (nuint)length, MsgNoSignal);
            WakeProfile.Switch(WakeProfile.Phase.Ours);
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
