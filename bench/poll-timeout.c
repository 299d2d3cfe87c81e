// What a data wake-up costs a reader whose poll(2) carries a timeout that never fires (the budget's
// bounded waits) against one that waits without a timeout, and with a coarser timer slack: a child
// process sends 4000 bytes every 20 ms over loopback TCP; the parent waits with poll and takes each
// write with one non-blocking recv, and prints its own CPU time per wake-up (bench/README.md,
// twentieth session).
//   cc -O2 -o /tmp/poll-timeout bench/poll-timeout.c && /tmp/poll-timeout TIMEOUT_MS [SLACK_NS [SECONDS]]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: poll-timeout TIMEOUT_MS [SLACK_NS [SECONDS]]\n");
        return 2;
    }
    int timeout = atoi(argv[1]);
    long slack = argc > 2 ? atol(argv[2]) : 0;
    int seconds = argc > 3 ? atoi(argv[3]) : 10;
    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t length = sizeof address;
    if (bind(listener, (void *)&address, sizeof address) || getsockname(listener, (void *)&address, &length) || listen(listener, 1)) {
        perror("listen");
        return 1;
    }
    pid_t sender = fork();
    if (sender == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (void *)&address, sizeof address))
            _exit(1);
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char payload[4000];
        memset(payload, 1, sizeof payload);
        struct timespec due;
        clock_gettime(CLOCK_MONOTONIC, &due);
        for (int i = 0; i < seconds * 50; i++) {
            due.tv_nsec += 20000000;
            if (due.tv_nsec >= 1000000000) {
                due.tv_nsec -= 1000000000;
                due.tv_sec++;
            }
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
            send(s, payload, sizeof payload, 0);
        }
        close(s);
        _exit(0);
    }
    int reader = accept(listener, NULL, NULL);
    if (slack)
        prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0);
    char buffer[65536];
    long wakes = 0, timeouts = 0;
    double before = thread_cpu();
    for (;;) {
        struct pollfd wait = { reader, POLLIN, 0 };
        if (poll(&wait, 1, timeout) == 0) {
            timeouts++;
            continue;
        }
        wakes++;
        if (recv(reader, buffer, sizeof buffer, MSG_DONTWAIT) == 0)
            break;
    }
    double used = thread_cpu() - before;
    waitpid(sender, NULL, 0);
    printf("timeout %d ms, slack %ld ns: %ld wake-ups, %ld timeouts, %.1f us CPU a wake-up\n", timeout, slack, wakes, timeouts, used * 1e6 / wakes);
    return 0;
}
