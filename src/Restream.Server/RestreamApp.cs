using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;
using Restream.Ingest;
using Restream.Server.Api;
using Restream.Server.Storage;
using Scalar.AspNetCore;
using Restream.Ingest.Hub;
using Restream.Ingest.Rtmp;
using Restream.Ingest.Srt;
using Restream.Relay;

namespace Restream.Server;

/// <summary>Builds the server: every role in one process unless configured otherwise.</summary>
public static class RestreamApp
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);

        // --config path/to/restream.json (or RESTREAM_CONFIG): the operator's file, under the command line.
        var configFile = builder.Configuration["config"] ?? Environment.GetEnvironmentVariable("RESTREAM_CONFIG");
        if (!string.IsNullOrEmpty(configFile))
        {
            if (!File.Exists(configFile))
            {
                throw new OptionsValidationException("config", typeof(object), [$"config file \"{configFile}\" does not exist (--config / RESTREAM_CONFIG)"]);
            }

            builder.Configuration.AddJsonFile(Path.GetFullPath(configFile), optional: false, reloadOnChange: false);
            builder.Configuration.AddEnvironmentVariables();
            builder.Configuration.AddCommandLine(args);
        }
        if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["ASPNETCORE_URLS"])
            && string.IsNullOrEmpty(builder.Configuration["Kestrel:Endpoints:Http:Url"]))
        {
            builder.WebHost.UseUrls("http://0.0.0.0:8080");
        }

        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });

        var services = builder.Services;
        services.AddSingleton(TimeProvider.System);
        var roles = RestreamRoles.Parse(builder.Configuration["roles"] ?? builder.Configuration["Restream:Roles"]);
        var transcodeEnabled = builder.Configuration.GetValue<bool>("Restream:Transcode:Enabled");
        services.AddOptions<Restream.Transcode.TranscodeOptions>().Bind(builder.Configuration.GetSection("Restream:Transcode"));
        services.AddCoordination(builder.Configuration, roles, transcodeEnabled);
        if (!roles.Edge)
        {
            return BuildWorker(builder, configure);
        }

        services.AddOptions<RtmpIngestOptions>().Bind(builder.Configuration.GetSection("Restream:Rtmp")).ValidateOnStart();
        services.AddSingleton<IValidateOptions<RtmpIngestOptions>, RtmpIngestOptionsValidator>();
        services.AddOptions<RtmpsIngestOptions>().Bind(builder.Configuration.GetSection("Restream:Rtmps")).ValidateOnStart();
        services.AddSingleton<IValidateOptions<RtmpsIngestOptions>, RtmpsIngestOptionsValidator>();
        services.AddOptions<ChannelsOptions>().Bind(builder.Configuration.GetSection("Restream")).ValidateOnStart();
        services.AddSingleton<IValidateOptions<ChannelsOptions>, ChannelsOptionsValidator>();
        services.AddOptions<RelayOptions>().Bind(builder.Configuration.GetSection("Restream:Relay")).ValidateOnStart();
        var storage = new StorageOptions();
        storage.Database = builder.Configuration["Restream:Database"] ?? storage.Database;
        storage.DataProtectionKeys = builder.Configuration["Restream:DataProtectionKeys"] ?? storage.DataProtectionKeys;
        storage.BootstrapApiKey = builder.Configuration["Restream:Api:BootstrapApiKey"];
        if (int.TryParse(builder.Configuration["Restream:Api:MaxAuthFailuresPerMinute"], out var maxFailures) && maxFailures > 0)
        {
            storage.MaxAuthFailuresPerMinute = maxFailures;
        }
        services.AddSingleton(storage);
        services.AddSingleton(new RestreamDbFactory(storage.Database));
        services.AddDataProtection().SetApplicationName("restream").PersistKeysToFileSystem(new DirectoryInfo(storage.DataProtectionKeys));
        // Runs before the listeners start: the schema is in place before the first publish.
        services.AddHostedService<DatabaseMigrator>();
        services.AddSingleton<ChannelEvents>();
        services.AddSingleton<DatabaseChannelCatalog>();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<ChannelsOptions>>().Value.ToCatalog());
        services.AddSingleton<IChannelCatalog, CompositeChannelCatalog>();
        services.AddSingleton<ApiKeyAuthenticator>();
        services.AddSingleton<LiveChannels>();
        services.AddHostedService<SessionRecorder>();
        services.AddSingleton<RestreamMetrics>();
        var webhooks = new WebhookOptions();
        builder.Configuration.GetSection("Restream:Webhooks").Bind(webhooks);
        services.AddSingleton(webhooks);
        services.AddSingleton<WebhookDispatcher>();
        services.AddSingleton<IPublishAuthorizer>(sp => sp.GetRequiredService<WebhookDispatcher>());
        services.AddHostedService(sp => sp.GetRequiredService<WebhookDispatcher>());
        services.AddProblemDetails();
        services.AddOpenApi();
        services.AddSingleton<StreamRegistry>();
        services.AddSingleton<IngestCounters>();
        services.AddOptions<SrtIngestOptions>().Bind(builder.Configuration.GetSection("Restream:Srt")).ValidateOnStart();
        services.AddSingleton<SrtServer>();
        services.AddHostedService(sp => sp.GetRequiredService<SrtServer>());
        services.AddSingleton<RtmpServer>();
        services.AddHostedService(sp => sp.GetRequiredService<RtmpServer>());
        services.AddSingleton<Restream.Transcode.TranscodeService>();
        services.AddHostedService(sp => sp.GetRequiredService<Restream.Transcode.TranscodeService>());
        services.AddSingleton<Restream.Transcode.RecordingService>();
        services.AddHostedService(sp => sp.GetRequiredService<Restream.Transcode.RecordingService>());
        services.AddSingleton<RelayService>();
        services.AddHostedService(sp => sp.GetRequiredService<RelayService>());
        configure?.Invoke(builder);

        var app = builder.Build();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.MapOpenApi("/openapi/v1.json");
        app.MapScalarApiReference("/api/reference", o => o.WithOpenApiRoutePattern("/openapi/v1.json").WithTitle("Restream API"));
        app.MapRestreamApi();
        app.MapWebhookApi();
        app.MapHlsFiles();
        app.MapGet("/metrics", async (HttpContext http, RestreamMetrics metrics) =>
        {
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await metrics.Registry.CollectAndExportAsTextAsync(http.Response.Body, http.RequestAborted);
        });
        app.MapGet("/healthz", () => Results.Ok(new { status = "ok" }));
        // Ready once every configured listener is bound (RTMP, and RTMPS and SRT when they are on): a load balancer
        // or a test that sends a publisher before then would be refused.
        app.MapGet("/readyz", (RtmpServer rtmp, SrtServer srt) =>
            rtmp.BoundEndpoint.IsCompletedSuccessfully && rtmp.BoundTlsEndpoint.IsCompletedSuccessfully && srt.BoundEndpoint.IsCompletedSuccessfully
                ? Results.Ok(new
                {
                    status = "ready",
                    rtmp = rtmp.BoundEndpoint.Result.ToString(),
                    rtmps = rtmp.BoundTlsEndpoint.Result?.ToString(),
                    srt = srt.BoundEndpoint.Result?.ToString(),
                })
                : Results.Json(new { status = "starting" }, statusCode: 503));
        return app;
    }

    /// <summary>A transcode worker on its own: jobs from Redis, output to the shared folder, health for its probes.</summary>
    private static WebApplication BuildWorker(WebApplicationBuilder builder, Action<WebApplicationBuilder>? configure)
    {
        configure?.Invoke(builder);
        var app = builder.Build();
        app.MapGet("/healthz", () => Results.Ok(new { status = "ok", role = "worker" }));
        app.MapGet("/readyz", (StackExchange.Redis.IConnectionMultiplexer redis, Restream.Transcode.TranscodeWorker worker) =>
            redis.IsConnected
                ? Results.Ok(new { status = "ready", role = "worker", channels = worker.Channels })
                : Results.Json(new { status = "waiting for Redis" }, statusCode: 503));
        return app;
    }
}
