using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace Restream.Data;

/// <summary>
/// The configuration store. One model, two providers: SQLite for a single node (the default) and
/// PostgreSQL for a cluster. Each provider has its own migrations (see the two subclasses).
/// </summary>
public abstract class RestreamDb(DbContextOptions options) : DbContext(options)
{
    public DbSet<ChannelEntity> Channels => Set<ChannelEntity>();
    public DbSet<DestinationEntity> Destinations => Set<DestinationEntity>();
    public DbSet<ApiKeyEntity> ApiKeys => Set<ApiKeyEntity>();
    public DbSet<StreamSessionEntity> Sessions => Set<StreamSessionEntity>();
    public DbSet<WebhookEntity> Webhooks => Set<WebhookEntity>();
    public DbSet<WebhookDeliveryEntity> WebhookDeliveries => Set<WebhookDeliveryEntity>();

    protected override void OnModelCreating(ModelBuilder model)
    {
        model.Entity<ChannelEntity>(e =>
        {
            e.ToTable("channels");
            e.HasKey(c => c.Id);
            e.Property(c => c.Name).HasMaxLength(64);
            e.HasIndex(c => c.Name).IsUnique();
            e.Property(c => c.StreamKeyId).HasMaxLength(32);
            e.HasIndex(c => c.StreamKeyId).IsUnique();
            e.HasMany(c => c.Destinations).WithOne().HasForeignKey(d => d.ChannelId).OnDelete(DeleteBehavior.Cascade);
        });
        model.Entity<DestinationEntity>(e =>
        {
            e.ToTable("destinations");
            e.HasKey(d => d.Id);
            e.Property(d => d.Name).HasMaxLength(100);
            e.Property(d => d.Platform).HasMaxLength(32);
            e.Property(d => d.Url).HasMaxLength(1024);
        });
        model.Entity<ApiKeyEntity>(e =>
        {
            e.ToTable("api_keys");
            e.HasKey(k => k.Id);
            e.Property(k => k.Name).HasMaxLength(100);
            e.Property(k => k.KeyId).HasMaxLength(32);
            e.HasIndex(k => k.KeyId).IsUnique();
            e.Property(k => k.Scope).HasMaxLength(16);
        });
        model.Entity<StreamSessionEntity>(e =>
        {
            e.ToTable("stream_sessions");
            e.HasKey(s => s.Id);
            e.HasIndex(s => s.StartedAt);
            e.Property(s => s.ChannelName).HasMaxLength(64);
            e.Property(s => s.Publisher).HasMaxLength(64);
            e.Property(s => s.VideoCodec).HasMaxLength(16);
        });
        model.Entity<WebhookEntity>(e =>
        {
            e.ToTable("webhooks");
            e.HasKey(w => w.Id);
            e.Property(w => w.Url).HasMaxLength(1024);
            e.Property(w => w.Events).HasMaxLength(256);
        });
        model.Entity<WebhookDeliveryEntity>(e =>
        {
            e.ToTable("webhook_deliveries");
            e.HasKey(d => d.Id);
            e.HasIndex(d => new { d.WebhookId, d.CreatedAt });
            e.Property(d => d.Event).HasMaxLength(32);
            e.Property(d => d.Status).HasMaxLength(16);
            e.Property(d => d.Error).HasMaxLength(512);
        });
    }

    /// <summary>Picks the provider from a connection string: "Host=…" is PostgreSQL, anything else SQLite.</summary>
    public static bool IsPostgres(string connectionString) =>
        connectionString.Contains("Host=", StringComparison.OrdinalIgnoreCase)
        || connectionString.StartsWith("postgres", StringComparison.OrdinalIgnoreCase);
}

public sealed class SqliteRestreamDb(DbContextOptions<SqliteRestreamDb> options) : RestreamDb(options)
{
    protected override void ConfigureConventions(ModelConfigurationBuilder configuration)
    {
        // SQLite has no date type; stored as a sortable 64-bit number so ORDER BY and range filters work.
        configuration.Properties<DateTimeOffset>().HaveConversion<Microsoft.EntityFrameworkCore.Storage.ValueConversion.DateTimeOffsetToBinaryConverter>();
    }
}

public sealed class PostgresRestreamDb(DbContextOptions<PostgresRestreamDb> options) : RestreamDb(options)
{
    protected override void OnModelCreating(ModelBuilder model)
    {
        base.OnModelCreating(model);
        // DateTimeOffset maps to timestamptz, which Npgsql wants in UTC: we only ever store UTC.
    }
}

/// <summary>Design-time factories for <c>dotnet ef migrations add</c>.</summary>
public sealed class SqliteDesignFactory : IDesignTimeDbContextFactory<SqliteRestreamDb>
{
    public SqliteRestreamDb CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<SqliteRestreamDb>().UseSqlite("Data Source=design.db").Options);
}

public sealed class PostgresDesignFactory : IDesignTimeDbContextFactory<PostgresRestreamDb>
{
    public PostgresRestreamDb CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<PostgresRestreamDb>().UseNpgsql("Host=localhost;Database=restream").Options);
}
