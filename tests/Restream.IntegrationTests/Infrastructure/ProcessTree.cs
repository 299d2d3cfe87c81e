using System.Globalization;

namespace Restream.IntegrationTests.Infrastructure;

/// <summary>Processes and their children, from /proc.</summary>
public static class ProcessTree
{
    /// <summary>Whether the process still runs (a zombie no longer does).</summary>
    public static bool IsRunning(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return !stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return false;
        }
    }

    public static int? ChildNamed(int parent, string name)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }

            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (fields[0] != "Z" && int.Parse(fields[1], CultureInfo.InvariantCulture) == parent
                    && File.ReadAllText(Path.Combine(dir, "comm")).Trim() == name)
                {
                    return pid;
                }
            }
            catch (IOException)
            {
            }
        }

        return null;
    }
}
