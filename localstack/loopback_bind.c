/*
 * loopback_bind.so: an LD_PRELOAD shim that keeps a server on this machine.
 *
 * Neither local engine (DynamoDB Local, a Java server; kinesis-mock, a Node
 * program) has an option to choose the address it listens on: both bind the
 * wildcard address, which would expose an unauthenticated AWS look-alike to
 * the network. This shim wraps libc's bind(2) and rewrites a wildcard address
 * to loopback before the real bind runs:
 *   0.0.0.0          -> 127.0.0.1
 *   ::  (dual-stack) -> ::ffff:127.0.0.1  (still reached as 127.0.0.1)
 *   ::  (IPv6 only)  -> ::1
 * Every other address passes through untouched. localstack/up builds it with
 * the machine's C compiler and checks the listening sockets afterwards.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static bind_fn real_bind(void) {
    static bind_fn real;
    if (real == NULL) {
        real = (bind_fn)dlsym(RTLD_NEXT, "bind");
    }
    return real;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    bind_fn next = real_bind();
    if (next == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (addr != NULL && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in v4;
        memcpy(&v4, addr, sizeof v4);
        if (v4.sin_addr.s_addr == htonl(INADDR_ANY)) {
            v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return next(fd, (const struct sockaddr *)&v4, sizeof v4);
        }
    } else if (addr != NULL && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 v6;
        memcpy(&v6, addr, sizeof v6);
        if (IN6_IS_ADDR_UNSPECIFIED(&v6.sin6_addr)) {
            int v6only = 0;
            socklen_t optlen = sizeof v6only;
            if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen) != 0) {
                v6only = 0;
            }
            if (v6only) {
                v6.sin6_addr = in6addr_loopback;
            } else {
                static const unsigned char mapped_loopback[16] = {
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
                memcpy(&v6.sin6_addr, mapped_loopback, sizeof mapped_loopback);
            }
            return next(fd, (const struct sockaddr *)&v6, sizeof v6);
        }
    }
    return next(fd, addr, len);
}
