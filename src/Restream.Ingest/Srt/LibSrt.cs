using System.Buffers.Binary;
using System.Net;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Restream.Ingest.Srt;

/// <summary>Thrown when libsrt reports an error; the message is libsrt's own.</summary>
public sealed class SrtException(string message, int code) : Exception(message)
{
    public int Code { get; } = code;
}

/// <summary>
/// The small part of libsrt's C API (srt.h, libsrt 1.5) that ingest needs: a listener, accept,
/// message receive, socket options. Debian ships it as libsrt1.5-openssl (libsrt.so.1.5).
/// </summary>
internal static unsafe partial class LibSrt
{
    private const string Library = "srt";

    // SRT_SOCKOPT values from srt.h.
    public const int SrtoSndSyn = 1;
    public const int SrtoRcvSyn = 2;
    public const int SrtoConnTimeo = 36;
    public const int SrtoRcvTimeo = 14;
    public const int SrtoLatency = 23;
    public const int SrtoOheadBw = 25;
    public const int SrtoPassphrase = 26;
    public const int SrtoPbKeyLen = 27;
    public const int SrtoStreamId = 46;
    public const int SrtoTransType = 50;

    private static int _started;

    static LibSrt()
    {
        NativeLibrary.SetDllImportResolver(typeof(LibSrt).Assembly, Resolve);
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Library)
        {
            return IntPtr.Zero;
        }

        foreach (var candidate in new[] { "libsrt.so.1.5", "libsrt-gnutls.so.1.5", "libsrt.so.1", "libsrt.so", "srt.dll", "libsrt.dylib" })
        {
            if (NativeLibrary.TryLoad(candidate, assembly, path, out var handle))
            {
                return handle;
            }
        }

        throw new DllNotFoundException("libsrt is not installed: apt-get install libsrt1.5-openssl (Debian/Ubuntu)");
    }

    [LibraryImport(Library)] private static partial int srt_startup();
    [LibraryImport(Library)] public static partial int srt_create_socket();
    [LibraryImport(Library)] private static partial int srt_bind(int u, byte* name, int namelen);
    [LibraryImport(Library)] private static partial int srt_listen(int u, int backlog);
    [LibraryImport(Library)] private static partial int srt_accept(int u, byte* addr, int* addrlen);
    [LibraryImport(Library)] public static partial int srt_close(int u);
    [LibraryImport(Library)] private static partial int srt_recvmsg(int u, byte* buf, int len);
    [LibraryImport(Library)] private static partial int srt_send(int u, byte* buf, int len);
    [LibraryImport(Library)] private static partial int srt_bstats(int u, void* perf, int clear);
    [LibraryImport(Library)] private static partial int srt_connect(int u, byte* name, int namelen);
    [LibraryImport(Library)] private static partial int srt_setsockflag(int u, int opt, void* optval, int optlen);
    [LibraryImport(Library)] private static partial int srt_getsockflag(int u, int opt, void* optval, int* optlen);
    [LibraryImport(Library)] private static partial IntPtr srt_getlasterror_str();
    [LibraryImport(Library)] private static partial int srt_getlasterror(int* errnoLoc);

    public static void Startup()
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            Check(srt_startup());
        }
    }

    private static int Check(int result)
    {
        if (result < 0)
        {
            throw LastError();
        }

        return result;
    }

    public static SrtException LastError()
    {
        var code = srt_getlasterror(null);
        return new SrtException(Marshal.PtrToStringUTF8(srt_getlasterror_str()) ?? $"SRT error {code}", code);
    }

    public static void SetInt(int socket, int option, int value) => Check(srt_setsockflag(socket, option, &value, sizeof(int)));

    public static void SetString(int socket, int option, string value)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(value);
        fixed (byte* p = bytes)
        {
            Check(srt_setsockflag(socket, option, p, bytes.Length));
        }
    }

    public static string GetString(int socket, int option)
    {
        var buffer = stackalloc byte[768];
        var length = 768;
        Check(srt_getsockflag(socket, option, buffer, &length));
        return System.Text.Encoding.UTF8.GetString(buffer, Math.Max(0, Math.Min(length, 768)));
    }

    public static void BindAndListen(int socket, IPEndPoint endpoint, int backlog)
    {
        // struct sockaddr_in: family (host order), port (network order), IPv4 address, 8 zero bytes.
        var address = stackalloc byte[16];
        WriteSockaddr(new Span<byte>(address, 16), endpoint);
        Check(srt_bind(socket, address, 16));
        Check(srt_listen(socket, backlog));
    }

    /// <summary>The link figures of a connection (srt_bstats), or null once the socket is gone.</summary>
    public static SrtStats? Stats(int socket)
    {
        // The real struct is longer than the prefix we read, and grows between versions: give it room.
        var buffer = stackalloc byte[4096];
        if (srt_bstats(socket, buffer, 0) < 0)
        {
            return null;
        }

        return *(SrtStats*)buffer;
    }

    /// <summary>Connects a caller socket (blocking, bounded by SRTO_CONNTIMEO).</summary>
    public static void Connect(int socket, IPEndPoint endpoint)
    {
        var address = stackalloc byte[16];
        WriteSockaddr(new Span<byte>(address, 16), endpoint);
        Check(srt_connect(socket, address, 16));
    }

    /// <summary>Sends one message (at most 1316 bytes in live mode); blocks while the send buffer is full.</summary>
    public static void Send(int socket, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            Check(srt_send(socket, p, data.Length));
        }
    }

    private static void WriteSockaddr(Span<byte> address, IPEndPoint endpoint)
    {
        address.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(address, 2); // AF_INET, host order
        BinaryPrimitives.WriteUInt16BigEndian(address[2..], (ushort)endpoint.Port);
        endpoint.Address.MapToIPv4().TryWriteBytes(address.Slice(4, 4), out _);
    }

    /// <summary>Blocks until a caller connects; returns the new socket and the caller's address.</summary>
    public static (int Socket, string Remote) Accept(int listener)
    {
        var address = stackalloc byte[128];
        var length = 128;
        var socket = Check(srt_accept(listener, address, &length));
        var remote = "?";
        if (length >= 8 && BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(address, 2)) == 2)
        {
            var port = BinaryPrimitives.ReadUInt16BigEndian(new ReadOnlySpan<byte>(address + 2, 2));
            remote = $"{new IPAddress(new ReadOnlySpan<byte>(address + 4, 4))}:{port}";
        }

        return (socket, remote);
    }

    /// <summary>Receives one message (up to 1316 bytes of TS in live mode); 0 or less when the connection ended.</summary>
    public static int Receive(int socket, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            return srt_recvmsg(socket, p, buffer.Length);
        }
    }
}

/// <summary>The leading fields of libsrt's SRT_TRACEBSTATS (struct CBytePerfMon in srt.h), in its order.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SrtStats
{
    public long MsTimeStamp, PktSentTotal, PktRecvTotal;
    public int PktSndLossTotal, PktRcvLossTotal, PktRetransTotal, PktSentAckTotal, PktRecvAckTotal, PktSentNakTotal, PktRecvNakTotal;
    public long UsSndDurationTotal;
    public int PktSndDropTotal, PktRcvDropTotal, PktRcvUndecryptTotal;
    public ulong ByteSentTotal, ByteRecvTotal, ByteRcvLossTotal, ByteRetransTotal, ByteSndDropTotal, ByteRcvDropTotal, ByteRcvUndecryptTotal;
    public long PktSent, PktRecv;
    public int PktSndLoss, PktRcvLoss, PktRetrans, PktRcvRetrans, PktSentAck, PktRecvAck, PktSentNak, PktRecvNak;
    public double MbpsSendRate, MbpsRecvRate;
    public long UsSndDuration;
    public int PktReorderDistance;
    public double PktRcvAvgBelatedTime;
    public long PktRcvBelated;
    public int PktSndDrop, PktRcvDrop, PktRcvUndecrypt;
    public ulong ByteSent, ByteRecv, ByteRcvLoss, ByteRetrans, ByteSndDrop, ByteRcvDrop, ByteRcvUndecrypt;
    public double UsPktSndPeriod;
    public int PktFlowWindow, PktCongestionWindow, PktFlightSize;
    public double MsRtt, MbpsBandwidth;
}
