using System.Security.Cryptography.X509Certificates;

namespace Restream.Ingest.Rtmp;

/// <summary>
/// The RTMPS certificate, loaded from PEM or PFX files and loaded again when the files change (a
/// renewed Let's Encrypt certificate is picked up by new connections without a restart). A renewal
/// that cannot be read keeps the previous certificate and says so.
/// </summary>
public sealed class TlsCertificate
{
    private static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(1);
    private readonly RtmpsIngestOptions _options;
    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private X509Certificate2 _current;
    private DateTime _certificateWritten;
    private DateTime _keyWritten;
    private DateTimeOffset _lastCheck;

    public TlsCertificate(RtmpsIngestOptions options, TimeProvider time)
    {
        _options = options;
        _time = time;
        _current = Load();
        (_certificateWritten, _keyWritten) = Stamps();
        _lastCheck = time.GetUtcNow();
    }

    /// <summary>Raised after a changed certificate was loaded (or failed to load: the exception).</summary>
    public event Action<X509Certificate2?, Exception?>? Reloaded;

    public X509Certificate2 Current
    {
        get
        {
            var now = _time.GetUtcNow();
            if (now - _lastCheck < CheckInterval)
            {
                return _current;
            }

            lock (_gate)
            {
                _lastCheck = now;
                var stamps = Stamps();
                if (stamps == (_certificateWritten, _keyWritten))
                {
                    return _current;
                }

                try
                {
                    var fresh = Load();
                    _current = fresh;
                    (_certificateWritten, _keyWritten) = stamps;
                    Reloaded?.Invoke(fresh, null);
                }
                catch (Exception e) when (e is IOException or System.Security.Cryptography.CryptographicException or ArgumentException)
                {
                    // Half-written renewals happen; the old certificate serves until the files make sense.
                    Reloaded?.Invoke(null, e);
                }

                return _current;
            }
        }
    }

    private (DateTime, DateTime) Stamps() =>
        (File.GetLastWriteTimeUtc(_options.CertificateFile!),
         string.IsNullOrEmpty(_options.KeyFile) ? default : File.GetLastWriteTimeUtc(_options.KeyFile));

    private X509Certificate2 Load()
    {
        var file = _options.CertificateFile!;
        if (!File.Exists(file))
        {
            throw new FileNotFoundException($"Restream:Rtmps:CertificateFile \"{file}\" does not exist", file);
        }

        var text = Path.GetExtension(file).ToLowerInvariant() is ".pfx" or ".p12" ? null : File.ReadAllText(file);
        if (text is null || !text.Contains("-----BEGIN", StringComparison.Ordinal))
        {
            return X509CertificateLoader.LoadPkcs12FromFile(file, _options.Password);
        }

        var pem = string.IsNullOrEmpty(_options.KeyFile)
            ? X509Certificate2.CreateFromPemFile(file)
            : X509Certificate2.CreateFromPemFile(file, _options.KeyFile);
        // SslStream on Linux wants the key in a form it can export to OpenSSL: round-trip through PKCS#12.
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }
}
