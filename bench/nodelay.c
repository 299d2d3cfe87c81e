/*
 * nodelay.so: an LD_PRELOAD shim for the relay bench. Every TCP socket a process connects gets
 * TCP_NODELAY before its connect(2), so each send goes out at once instead of waiting behind
 * unacknowledged data (Nagle's algorithm). nginx-rtmp has no setting for it on its push
 * connections; with it, nginx-rtmp sends the way a relay under a latency target must, and pays for
 * its own transmissions (on loopback the kernel charges a send's delivery to the sender, while a
 * Nagle-delayed send is delivered later, in the receiver's context, when its ACK comes).
 *
 *   cc -O2 -shared -fPIC -o nodelay.so nodelay.c -ldl
 *   LD_PRELOAD=./nodelay.so nginx ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *address, socklen_t length)
{
    static int (*next)(int, const struct sockaddr *, socklen_t);
    if (!next) {
        next = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    }

    int type = 0;
    socklen_t size = sizeof type;
    if (address && (address->sa_family == AF_INET || address->sa_family == AF_INET6)
        && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) == 0 && type == SOCK_STREAM) {
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    }

    return next(fd, address, length);
}
