using System.Text;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>
/// A real nginx with Debian's libnginx-mod-rtmp on a loopback port, standing in for Twitch and
/// friends. Every application records what it receives to FLV so tests can probe it afterwards.
/// </summary>
public sealed class NginxRtmp : IAsyncDisposable
{
    private const string Module = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
    private ExternalProcess? _process;

    public NginxRtmp(IReadOnlyList<string> applications, int? port = null)
    {
        Applications = applications;
        Port = port ?? TestPorts.GetFreeTcpPort();
        Directory = TestPorts.NewTempDirectory("nginx");
        var conf = new StringBuilder();
        conf.AppendLine($"load_module {Module};");
        if (Environment.UserName == "root")
        {
            conf.AppendLine("user root;");
        }

        conf.AppendLine("worker_processes 1;");
        conf.AppendLine($"pid {Directory}/nginx.pid;");
        conf.AppendLine($"error_log {Directory}/error.log info;");
        conf.AppendLine("events { worker_connections 256; }");
        conf.AppendLine("rtmp { server {");
        conf.AppendLine($"  listen 127.0.0.1:{Port};");
        conf.AppendLine("  chunk_size 4096;");
        foreach (var app in applications)
        {
            System.IO.Directory.CreateDirectory(Path.Combine(Directory, app));
            conf.AppendLine($"  application {app} {{ live on; record all; record_path {Directory}/{app}; record_unique off; }}");
        }

        conf.AppendLine("} }");
        File.WriteAllText(ConfigFile, conf.ToString());
    }

    public IReadOnlyList<string> Applications { get; }
    public int Port { get; }
    public string Directory { get; }
    private string ConfigFile => Path.Combine(Directory, "nginx.conf");

    public string Url(string app) => $"rtmp://127.0.0.1:{Port}/{app}";

    /// <summary>Where the application records a stream name.</summary>
    public string RecordingOf(string app, string streamName) => Path.Combine(Directory, app, streamName + ".flv");

    public async Task StartAsync()
    {
        if (!File.Exists(Module))
        {
            throw new InvalidOperationException($"{Module} is missing: apt-get install nginx libnginx-mod-rtmp (the test command does this)");
        }

        _process = ExternalProcess.Start("nginx", ["-p", Directory, "-c", ConfigFile, "-e", Path.Combine(Directory, "stderr.log"), "-g", "daemon off;"]);
        try
        {
            await TestPorts.WaitForTcpAsync(Port, TimeSpan.FromSeconds(10));
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"nginx did not start: {_process.Tail()}\n{ReadLog()}", e);
        }
    }

    public string ReadLog()
    {
        var log = Path.Combine(Directory, "error.log");
        return File.Exists(log) ? File.ReadAllText(log) : string.Empty;
    }

    /// <summary>Kills nginx hard, as a crashing platform ingest would vanish.</summary>
    public async Task KillAsync()
    {
        if (_process is not null)
        {
            await _process.DisposeAsync();
            _process = null;
        }
    }

    public async ValueTask DisposeAsync() => await KillAsync();
}

/// <summary>Debian's stunnel in server mode: TLS on one loopback port, plain TCP to another.</summary>
public sealed class TlsTerminator : IAsyncDisposable
{
    private ExternalProcess? _process;

    public TlsTerminator(int targetPort, TestCertificate certificate)
    {
        Port = TestPorts.GetFreeTcpPort();
        var dir = TestPorts.NewTempDirectory("stunnel");
        ConfigFile = Path.Combine(dir, "stunnel.conf");
        File.WriteAllText(ConfigFile, $"""
            foreground = yes
            pid =
            [rtmps]
            accept = 127.0.0.1:{Port}
            connect = 127.0.0.1:{targetPort}
            cert = {certificate.CertificateFile}
            key = {certificate.KeyFile}
            """);
    }

    public int Port { get; }
    private string ConfigFile { get; }

    public async Task StartAsync()
    {
        _process = ExternalProcess.Start("stunnel4", [ConfigFile]);
        try
        {
            await TestPorts.WaitForTcpAsync(Port, TimeSpan.FromSeconds(10));
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"stunnel did not start: {_process.Tail()}", e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            await _process.DisposeAsync();
        }
    }
}

/// <summary>A self-signed certificate for "localhost" made with openssl for one test run.</summary>
public sealed record TestCertificate(string CertificateFile, string KeyFile)
{
    public static async Task<TestCertificate> CreateAsync()
    {
        var dir = TestPorts.NewTempDirectory("cert");
        var cert = Path.Combine(dir, "cert.pem");
        var key = Path.Combine(dir, "key.pem");
        var (code, output) = await ExternalProcess.RunAsync("openssl",
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"], TimeSpan.FromSeconds(30));
        if (code != 0)
        {
            throw new InvalidOperationException($"openssl failed: {output}");
        }

        return new TestCertificate(cert, key);
    }
}
