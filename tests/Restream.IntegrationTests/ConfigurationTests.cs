using Microsoft.Extensions.Options;
using Restream.Server;

namespace Restream.IntegrationTests;

public sealed class ConfigurationTests
{
    [Theory]
    [InlineData("Restream:Channels:0:Destinations:0:Url", "http://example.com/app", "Restream:Channels:0:Destinations:0:Url must be an rtmp://, rtmps:// or srt:// URL")]
    [InlineData("Restream:Channels:0:StreamKey", "short", "Restream:Channels:0:StreamKey is too short")]
    [InlineData("Restream:Rtmp:Port", "70000", "Restream:Rtmp:Port must be between 0 and 65535")]
    [InlineData("Restream:Rtmp:ChunkSize", "1", "Restream:Rtmp:ChunkSize must be between 128 and 65536")]
    public async Task Invalid_configuration_stops_start_up_naming_the_key(string key, string value, string expected)
    {
        var settings = new Dictionary<string, string>
        {
            ["Restream:Channels:0:Name"] = "main",
            ["Restream:Channels:0:StreamKey"] = "a-good-long-key",
            ["Restream:Channels:0:Destinations:0:Url"] = "rtmp://127.0.0.1/app",
            ["Restream:Channels:0:Destinations:0:Key"] = "k",
            ["Restream:Rtmp:Port"] = "0",
            [key] = value,
        };
        var dir = Infrastructure.TestPorts.NewTempDirectory("cfg");
        var app = RestreamApp.Build([.. settings.Select(kv => $"--{kv.Key}={kv.Value}"), "--urls=http://127.0.0.1:0", $"--Restream:Database=Data Source={dir}/r.db", $"--Restream:DataProtectionKeys={dir}/keys"]);
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
        Assert.Contains(expected, string.Join('\n', e.Failures));
        await app.DisposeAsync();
    }

    [Fact]
    public async Task A_destination_url_with_the_key_in_its_path_is_reported_without_it()
    {
        var app = RestreamApp.Build(["--Restream:Channels:0:Name=main", "--Restream:Channels:0:StreamKey=a-good-long-key",
            "--Restream:Channels:0:Destinations:0:Url=ftp://host/app/SECRETKEY", "--Restream:Rtmp:Port=0", "--urls=http://127.0.0.1:0"]);
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
        var message = string.Join('\n', e.Failures);
        Assert.Contains("Restream:Channels:0:Destinations:0:Url", message);
        Assert.DoesNotContain("SECRETKEY", message);
        await app.DisposeAsync();
    }

    [Fact]
    public async Task Missing_config_file_is_reported_by_name()
    {
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => Task.FromResult(RestreamApp.Build(["--config", "/nonexistent/restream.json"])));
        Assert.Contains("/nonexistent/restream.json", e.Message);
    }

    [Theory]
    [InlineData(new[] { "--roles", "encoder" }, "Restream:Roles: 'encoder' is not 'all' or a list of ingest, relay, api, worker")]
    [InlineData(new[] { "--roles", "worker" }, "a worker on its own takes its jobs from Redis: set Restream:Coordination")]
    [InlineData(new[] { "--roles", "ingest,api", "--Restream:Transcode:Enabled=true" }, "Restream:Transcode:Enabled: with no worker role here")]
    [InlineData(new[] { "--Restream:Coordination=localhost:6379" }, "Restream:Coordination:Redis: 'localhost:6379' is not a redis://host:port URL")]
    public void Roles_and_coordination_that_cannot_work_are_refused_naming_the_key(string[] args, string expected)
    {
        var e = Assert.Throws<OptionsValidationException>(() => RestreamApp.Build([.. args, "--urls=http://127.0.0.1:0"]));
        Assert.Contains(expected, string.Join('\n', e.Failures));
    }

    [Fact]
    public async Task A_port_already_in_use_stops_the_server_with_a_clear_message_and_exit_code_2()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var dir = Infrastructure.TestPorts.NewTempDirectory("inuse");
        string[] common = [Path.Combine(AppContext.BaseDirectory, "restream.dll"), $"--Restream:Database=Data Source={dir}/r.db", $"--Restream:DataProtectionKeys={dir}/keys"];

        var (code, output) = await Infrastructure.ExternalProcess.RunAsync("dotnet",
            [.. common, $"--urls=http://127.0.0.1:{port}", "--Restream:Rtmp:Port=0"], TimeSpan.FromSeconds(60));
        Assert.Equal(2, code);
        Assert.Contains($"cannot listen: the HTTP address http://127.0.0.1:{port} is already in use", output);
        Assert.DoesNotContain("Unhandled exception", output);

        (code, output) = await Infrastructure.ExternalProcess.RunAsync("dotnet",
            [.. common, "--urls=http://127.0.0.1:0", $"--Restream:Rtmp:Port={port}", "--Restream:Rtmp:Address=127.0.0.1"], TimeSpan.FromSeconds(60));
        Assert.Equal(2, code);
        Assert.Contains($"ingest cannot listen on 127.0.0.1:{port}", output);
        Assert.Contains("Restream:Rtmp:Port", output);
        Assert.DoesNotContain("Unhandled exception", output);
    }
}
