/*
 * floor-relay: the least a relay can cost on this machine, for the relay benchmark.
 *
 * A TCP forwarder with no protocol work at all: it accepts the publisher, connects to SINKS sinks and
 * copies the publisher's bytes to each of them; the first sink's answers go back to the publisher, the
 * others' are read and dropped (the RTMP handshake and commands pass through; the bench's sink accepts
 * any publish and does not check C2). Reads from the publisher use the same system calls as Restream's receive thread:
 * poll(2) honouring SO_RCVLOWAT, one non-blocking recv, one send to the destination. What it costs
 * is the kernel's share of a relay's wake-up (context switch, receive, loopback send) plus nothing:
 * a floor under any relay's CPU for a given number of wake-ups a second, and so what a given
 * latency bound costs at the least.
 *
 * usage: floor-relay LISTEN_PORT SINK_PORT LOWAT_BYTES WAIT_MS [SINKS]
 *   LOWAT_BYTES  receive low-water mark once the stream flows (1: wake for every frame)
 *   WAIT_MS      longest wait below the mark (-1: none)
 *   SINKS        how many connections to the sink each read is sent to (default 1, at most 64)
 * Built by the bench with the system's cc; Linux only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char buffer[256 * 1024];

static int send_all(int fd, const char *data, ssize_t length)
{
    while (length > 0) {
        ssize_t sent = send(fd, data, (size_t)length, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { struct pollfd p = { fd, POLLOUT, 0 }; poll(&p, 1, -1); continue; }
            return -1;
        }
        data += sent;
        length -= sent;
    }
    return 0;
}

#define MAX_SINKS 64

static void forward(int publisher, const int *sinks, int count, int lowat, int wait_ms)
{
    int one = 1;
    setsockopt(publisher, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; i < count; i++) setsockopt(sinks[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    long forwarded = 0;
    int marked = 0;
    for (;;) {
        struct pollfd fds[1 + MAX_SINKS];
        fds[0] = (struct pollfd){ publisher, POLLIN, 0 };
        for (int i = 0; i < count; i++) fds[1 + i] = (struct pollfd){ sinks[i], POLLIN, 0 };
        int ready = poll(fds, (nfds_t)(1 + count), marked ? wait_ms : -1);
        if (ready < 0 && errno != EINTR) return;
        /* the publisher: on a wake-up, or when the wait below the mark ran out */
        if (ready == 0 || (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t got = recv(publisher, buffer, sizeof buffer, MSG_DONTWAIT);
            if (got == 0) return;
            if (got < 0 && errno != EAGAIN && errno != EINTR) return;
            if (got > 0) {
                for (int i = 0; i < count; i++)
                    if (send_all(sinks[i], buffer, got) < 0) return;
                forwarded += got;
                /* past the handshake and commands: media flows, merge reads from here on */
                if (!marked && forwarded > 64 * 1024 && lowat > 1) {
                    setsockopt(publisher, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
                    marked = 1;
                }
            }
        }
        for (int i = 0; i < count; i++) {
            if (!(fds[1 + i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t got = recv(sinks[i], buffer, sizeof buffer, MSG_DONTWAIT);
            if (got == 0) return;
            if (got < 0 && errno != EAGAIN && errno != EINTR) return;
            if (got > 0 && i == 0 && send_all(publisher, buffer, got) < 0) return;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s LISTEN_PORT SINK_PORT LOWAT_BYTES WAIT_MS [SINKS]\n", argv[0]);
        return 2;
    }
    int listen_port = atoi(argv[1]), sink_port = atoi(argv[2]), lowat = atoi(argv[3]), wait_ms = atoi(argv[4]);
    int count = argc == 6 ? atoi(argv[5]) : 1;
    if (count < 1 || count > MAX_SINKS) {
        fprintf(stderr, "SINKS must be 1 to %d\n", MAX_SINKS);
        return 2;
    }
    signal(SIGCHLD, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(listen_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 16) < 0) {
        perror("listen");
        return 1;
    }
    for (;;) {
        int publisher = accept(listener, NULL, NULL);
        if (publisher < 0) continue;
        if (fork() == 0) {
            close(listener);
            int sinks[MAX_SINKS];
            struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(sink_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
            for (int i = 0; i < count; i++) {
                sinks[i] = socket(AF_INET, SOCK_STREAM, 0);
                if (connect(sinks[i], (struct sockaddr *)&to, sizeof to) != 0) _exit(1);
            }
            forward(publisher, sinks, count, lowat, wait_ms);
            _exit(0);
        }
        close(publisher);
    }
}
