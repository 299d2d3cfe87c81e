using Microsoft.Extensions.Options;
using Restream.Coordination;
using Restream.Transcode;
using StackExchange.Redis;

namespace Restream.Server;

/// <summary>
/// Which roles this process plays (<c>--roles</c> / <c>Restream:Roles</c>): <c>all</c> (the default),
/// or a list of <c>ingest</c>, <c>relay</c>, <c>api</c>, <c>worker</c>. Ingest, relay and API are
/// served together by one host for now; <c>worker</c> alone starts a transcode worker that takes jobs
/// from Redis and serves only health and metrics.
/// </summary>
public sealed record RestreamRoles(bool Edge, bool Worker)
{
    private static readonly string[] Known = ["all", "ingest", "relay", "api", "worker"];

    public static RestreamRoles Parse(string? text)
    {
        var names = (string.IsNullOrWhiteSpace(text) ? "all" : text).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(n => n.ToLowerInvariant()).ToList();
        var unknown = names.Where(n => !Known.Contains(n)).ToList();
        if (unknown.Count > 0 || names.Count == 0)
        {
            throw new OptionsValidationException("Restream:Roles", typeof(RestreamRoles),
                [$"Restream:Roles: '{text}' is not 'all' or a list of {string.Join(", ", Known[1..])}"]);
        }

        var all = names.Contains("all");
        return new RestreamRoles(all || names.Any(n => n is "ingest" or "relay" or "api"), all || names.Contains("worker"));
    }
}

public static class ClusterServices
{
    /// <summary>
    /// Binds <c>Restream:Coordination</c> — a <c>redis://</c> URL, or a section with <c>Redis</c> and the
    /// tuning knobs — and, when Redis is named, adds the one multiplexer of the process and the job queue.
    /// </summary>
    public static CoordinationOptions AddCoordination(this IServiceCollection services, IConfiguration configuration, RestreamRoles roles,
        bool transcodeEnabled)
    {
        var section = configuration.GetSection("Restream:Coordination");
        var options = new CoordinationOptions();
        section.Bind(options);
        if (!string.IsNullOrWhiteSpace(section.Value))
        {
            options.Redis = section.Value;
        }

        ConfigurationOptions? redis = null;
        if (options.Enabled)
        {
            try
            {
                redis = CoordinationOptions.ParseRedis(options.Redis!);
            }
            catch (ArgumentException e)
            {
                throw new OptionsValidationException("Restream:Coordination", typeof(CoordinationOptions), [e.Message]);
            }
        }

        var encoder = configuration["Restream:Transcode:Encoder"];
        if (encoder is not null && !LadderEncoder.Names.Contains(encoder))
        {
            throw new OptionsValidationException("Restream:Transcode:Encoder", typeof(TranscodeOptions),
                [$"Restream:Transcode:Encoder: '{encoder}' is not one of {string.Join(", ", LadderEncoder.Names)}"]);
        }

        if (roles.Worker && !roles.Edge && redis is null)
        {
            throw new OptionsValidationException("Restream:Roles", typeof(RestreamRoles),
                ["Restream:Roles: a worker on its own takes its jobs from Redis: set Restream:Coordination to redis://host:6379"]);
        }

        if (transcodeEnabled && roles.Edge && !roles.Worker && redis is null)
        {
            throw new OptionsValidationException("Restream:Transcode:Enabled", typeof(TranscodeOptions),
                ["Restream:Transcode:Enabled: with no worker role here, jobs go to workers through Redis: set Restream:Coordination"]);
        }

        services.AddSingleton(options);
        services.AddSingleton(Options.Create(options));
        if (redis is not null)
        {
            services.AddSingleton<IConnectionMultiplexer>(_ => ConnectionMultiplexer.Connect(redis));
            services.AddSingleton<RedisTranscodeQueue>();
            if (roles.Worker)
            {
                services.AddSingleton<TranscodeWorker>();
                services.AddHostedService(sp => sp.GetRequiredService<TranscodeWorker>());
            }
        }

        return options;
    }
}
