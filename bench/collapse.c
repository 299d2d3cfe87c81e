// Puts a running process's private anonymous memory (the GC heap, the runtime's own heaps; and the
// JIT's code with DOTNET_EnableWriteXorExecute=0) on 2 MB pages, from outside: process_madvise(2)
// with MADV_COLLAPSE (Linux 6.1+, root or CAP_SYS_NICE) over every 2 MB-aligned range of every such
// mapping. Used to ask whether TLB misses explain the server's cost per wake-up (bench/README.md,
// twentieth session); not part of the server.
//   cc -O2 -o /tmp/collapse bench/collapse.c && /tmp/collapse PID
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define HUGE (2UL << 20)
#define COLLAPSE 25 // MADV_COLLAPSE

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: collapse PID\n");
        return 2;
    }
    int pid = atoi(argv[1]);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        perror("pidfd_open");
        return 1;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    if (!maps) {
        perror(path);
        return 1;
    }
    char line[512];
    unsigned long collapsed = 0, refused = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long start, end, offset, inode;
        char perms[8], device[16], name[256] = "";
        if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %255[^\n]", &start, &end, perms, &offset, device, &inode, name) < 6)
            continue;
        // Private, readable, not backed by a file (W^X maps the JIT's code from a memfd: shared, skipped).
        if (inode != 0 || perms[0] != 'r' || perms[3] != 'p' || strstr(name, "stack"))
            continue;
        for (unsigned long at = (start + HUGE - 1) & ~(HUGE - 1); at + HUGE <= end; at += HUGE) {
            struct iovec range = { (void *)at, HUGE };
            if (syscall(SYS_process_madvise, pidfd, &range, 1, COLLAPSE, 0) < 0)
                refused++;
            else
                collapsed++;
        }
    }
    printf("%lu ranges of 2 MB collapsed, %lu refused\n", collapsed, refused);
    return 0;
}
