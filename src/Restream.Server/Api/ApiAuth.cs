using System.Collections.Concurrent;
using System.Net;
using Microsoft.EntityFrameworkCore;
using Restream.Server.Storage;

namespace Restream.Server.Api;

/// <summary>API key scopes: <c>read</c> sees, <c>admin</c> also changes.</summary>
public static class Scopes
{
    public const string Read = "read";
    public const string Admin = "admin";

    public static bool IsValid(string scope) => scope is Read or Admin;

    public static bool Grants(string held, string required) => held == Admin || held == required;
}

/// <summary>
/// Checks API keys (<c>Authorization: Bearer …</c> or <c>X-Api-Key</c>) against their salted hashes,
/// and slows down addresses that keep presenting bad keys.
/// </summary>
public sealed class ApiKeyAuthenticator(RestreamDbFactory db, StorageOptions options, TimeProvider time)
{
    public const string Prefix = "rsk";
    private int MaxFailuresPerMinute => options.MaxAuthFailuresPerMinute;
    private readonly ConcurrentDictionary<IPAddress, (int Count, DateTimeOffset WindowStart)> _failures = new();
    private readonly ConcurrentDictionary<string, (string Scope, DateTimeOffset Until)> _cache = new();

    public long Failures => _failureCount;
    private long _failureCount;

    public bool IsThrottled(IPAddress? address)
    {
        if (address is null || !_failures.TryGetValue(address, out var entry))
        {
            return false;
        }

        return entry.Count >= MaxFailuresPerMinute && time.GetUtcNow() - entry.WindowStart < TimeSpan.FromMinutes(1);
    }

    public void RecordFailure(IPAddress? address)
    {
        Interlocked.Increment(ref _failureCount);
        if (address is null)
        {
            return;
        }

        var now = time.GetUtcNow();
        _failures.AddOrUpdate(address, _ => (1, now),
            (_, e) => now - e.WindowStart > TimeSpan.FromMinutes(1) ? (1, now) : (e.Count + 1, e.WindowStart));
    }

    /// <summary>The scope of a valid, unrevoked key, or null.</summary>
    public async Task<string?> AuthenticateAsync(string key, CancellationToken cancellationToken)
    {
        var id = SecretKeys.IdOf(key, Prefix);
        if (id is null)
        {
            return null;
        }

        var now = time.GetUtcNow();
        if (_cache.TryGetValue(key, out var cached) && cached.Until > now)
        {
            return cached.Scope;
        }

        await using var context = db.Create();
        var entity = await context.ApiKeys.AsNoTracking().FirstOrDefaultAsync(k => k.KeyId == id, cancellationToken);
        if (entity is null || entity.RevokedAt is not null || !SecretKeys.Verify(key, entity.Salt, entity.Hash))
        {
            return null;
        }

        _cache[key] = (entity.Scope, now + TimeSpan.FromSeconds(10));
        return entity.Scope;
    }

    public void Forget() => _cache.Clear();

    public static string? KeyFrom(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return header["Bearer ".Length..].Trim();
        }

        var apiKey = request.Headers["X-Api-Key"].ToString();
        return apiKey.Length > 0 ? apiKey : null;
    }
}

/// <summary>Endpoint filter: 401 without a valid key, 403 without the scope, 429 after many bad keys.</summary>
public sealed class RequireScope(string scope) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var auth = http.RequestServices.GetRequiredService<ApiKeyAuthenticator>();
        var remote = http.Connection.RemoteIpAddress;
        if (auth.IsThrottled(remote))
        {
            return Results.Problem(statusCode: 429, title: "Too many failed authentication attempts", detail: "Wait a minute before trying again.");
        }

        var key = ApiKeyAuthenticator.KeyFrom(http.Request);
        var held = key is null ? null : await auth.AuthenticateAsync(key, http.RequestAborted);
        if (held is null)
        {
            auth.RecordFailure(remote);
            http.Response.Headers.WWWAuthenticate = "Bearer";
            return Results.Problem(statusCode: 401, title: key is null ? "API key required" : "Invalid API key",
                detail: "Send an API key as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'.");
        }

        if (!Scopes.Grants(held, scope))
        {
            return Results.Problem(statusCode: 403, title: "Not allowed", detail: $"This needs an API key with the '{scope}' scope.");
        }

        return await next(context);
    }
}
