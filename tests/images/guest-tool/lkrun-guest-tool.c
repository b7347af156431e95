/*
 * lkrun-guest-tool: the test guest's side of lkrun's vsock and network checks.
 *
 * Servers (one process per connection, children reaped by ignoring SIGCHLD):
 *   vsock-echo PORT      echo every byte until the peer's EOF, then half-close and close
 *   vsock-discard PORT   read until EOF, then answer "<bytes received>\n"
 *   vsock-source PORT    read one decimal line N, send N pattern bytes, then half-close
 *   udp-echo PORT        send every IPv4 datagram back to its sender
 * Clients:
 *   vsock-connect CID PORT       stdin -> socket (half-close at stdin EOF), socket -> stdout until EOF
 *   vsock-send CID PORT BYTES    send BYTES pattern bytes, half-close, print the reply
 *   vsock-recv CID PORT BYTES    ask a source for BYTES bytes, check the pattern, print count and time
 *   local-cid                    print this guest's vsock CID
 * Holders (descriptor exhaustion: one process, many connections, each echoing what it receives until killed):
 *   tcp-hold HOST PORT COUNT     open COUNT TCP connections, print how many were established and why the others
 *                                failed, then hold them
 *   vsock-hold CID PORT COUNT    the same over vsock
 *   vsock-hold-server PORT       accept every vsock connection to PORT and hold it
 * The pattern byte at stream offset i is i % 251, so a dropped, repeated or reordered chunk shows.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define PROGRAM "lkrun-guest-tool"
#include "die.h"

#define CHUNK (64 * 1024)
#define PATTERN_PERIOD 251

static uint64_t parse_number(const char *text, const char *what, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value > max)
        die("invalid %s '%s' (0..%" PRIu64 ")", what, text, max);
    return value;
}

static uint32_t parse_port(const char *text)
{
    return (uint32_t)parse_number(text, "port", UINT32_MAX - 1);
}

static uint32_t parse_cid(const char *text)
{
    return (uint32_t)parse_number(text, "CID", UINT32_MAX - 1);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill_pattern(unsigned char *buffer, size_t length, uint64_t offset)
{
    unsigned value = (unsigned)(offset % PATTERN_PERIOD);
    for (size_t i = 0; i < length; i++) {
        buffer[i] = (unsigned char)value;
        if (++value == PATTERN_PERIOD)
            value = 0;
    }
}

/* Index of the first byte that breaks the pattern, or length when all match. */
static size_t check_pattern(const unsigned char *buffer, size_t length, uint64_t offset)
{
    unsigned value = (unsigned)(offset % PATTERN_PERIOD);
    for (size_t i = 0; i < length; i++) {
        if (buffer[i] != value)
            return i;
        if (++value == PATTERN_PERIOD)
            value = 0;
    }
    return length;
}

/* Writes all of buffer to a blocking descriptor; returns 0, or -1 with errno set. */
static int write_all(int fd, const void *buffer, size_t length)
{
    const char *p = buffer;
    while (length > 0) {
        ssize_t n = write(fd, p, length);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        length -= (size_t)n;
    }
    return 0;
}

static ssize_t read_retrying(int fd, void *buffer, size_t length)
{
    ssize_t n;
    do
        n = read(fd, buffer, length);
    while (n < 0 && errno == EINTR);
    return n;
}

static int vsock_listen(uint32_t port, int backlog)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0)
        die_errno("socket(AF_VSOCK)");
    struct sockaddr_vm address = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
    if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0)
        die("bind vsock port %" PRIu32 ": %s", port, strerror(errno));
    if (listen(fd, backlog) < 0)
        die_errno("listen");
    return fd;
}

static int vsock_connect(uint32_t cid, uint32_t port)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0)
        die_errno("socket(AF_VSOCK)");
    struct sockaddr_vm address = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0)
        die("connect to vsock %" PRIu32 ":%" PRIu32 ": %s", cid, port, strerror(errno));
    return fd;
}

/* Accepts forever, handling each connection in a child so one slow peer does not block the others. */
static _Noreturn void serve(int listener, void (*handle)(int))
{
    signal(SIGCHLD, SIG_IGN);
    for (;;) {
        int connection = accept(listener, NULL, NULL);
        if (connection < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die_errno("accept");
        }
        pid_t child = fork();
        if (child == 0) {
            close(listener);
            handle(connection);
            _exit(0);
        }
        if (child < 0)
            fprintf(stderr, PROGRAM ": fork: %s\n", strerror(errno));
        close(connection);
    }
}

static void handle_echo(int fd)
{
    static unsigned char buffer[CHUNK];
    for (;;) {
        ssize_t n = read_retrying(fd, buffer, sizeof buffer);
        if (n < 0)
            die_errno("echo read");
        if (n == 0)
            break;
        if (write_all(fd, buffer, (size_t)n) < 0)
            die_errno("echo write");
    }
    shutdown(fd, SHUT_WR);
    close(fd);
}

static void handle_discard(int fd)
{
    static unsigned char buffer[CHUNK];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read_retrying(fd, buffer, sizeof buffer);
        if (n < 0)
            die_errno("discard read");
        if (n == 0)
            break;
        total += (uint64_t)n;
    }
    char reply[32];
    int length = snprintf(reply, sizeof reply, "%" PRIu64 "\n", total);
    if (write_all(fd, reply, (size_t)length) < 0)
        die_errno("discard reply");
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* Reads the request line byte by byte so no payload byte after it is consumed. */
static uint64_t read_request_line(int fd)
{
    char line[32];
    size_t used = 0;
    for (;;) {
        char c;
        ssize_t n = read_retrying(fd, &c, 1);
        if (n < 0)
            die_errno("source read");
        if (n == 0 || c == '\n')
            break;
        if (used == sizeof line - 1)
            die("source: request line too long");
        line[used++] = c;
    }
    if (used > 0 && line[used - 1] == '\r')
        used--;
    line[used] = '\0';
    return parse_number(line, "byte count", UINT64_MAX);
}

static void send_pattern(int fd, uint64_t count)
{
    static unsigned char buffer[CHUNK];
    uint64_t sent = 0;
    while (sent < count) {
        size_t length = count - sent < sizeof buffer ? (size_t)(count - sent) : sizeof buffer;
        fill_pattern(buffer, length, sent);
        if (write_all(fd, buffer, length) < 0)
            die_errno("source write");
        sent += length;
    }
}

static void handle_source(int fd)
{
    send_pattern(fd, read_request_line(fd));
    shutdown(fd, SHUT_WR);
    /* Wait for the peer to close so the data is not cut short by an early reset. */
    char sink[256];
    while (read_retrying(fd, sink, sizeof sink) > 0)
        ;
    close(fd);
}

static _Noreturn void command_server(int argc, char **argv, void (*handle)(int))
{
    if (argc != 3)
        die("usage: %s PORT", argv[1]);
    serve(vsock_listen(parse_port(argv[2]), 16), handle);
}

static _Noreturn void command_udp_echo(int argc, char **argv)
{
    if (argc != 3)
        die("usage: udp-echo PORT");
    uint32_t port = parse_port(argv[2]);
    if (port > 65535)
        die("invalid UDP port %" PRIu32, port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        die_errno("socket(AF_INET)");
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                   .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0)
        die("bind UDP port %" PRIu32 ": %s", port, strerror(errno));
    static unsigned char buffer[65536];
    for (;;) {
        struct sockaddr_in sender;
        socklen_t sender_length = sizeof sender;
        ssize_t n = recvfrom(fd, buffer, sizeof buffer, 0, (struct sockaddr *)&sender, &sender_length);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die_errno("recvfrom");
        }
        if (sendto(fd, buffer, (size_t)n, 0, (struct sockaddr *)&sender, sender_length) < 0)
            fprintf(stderr, PROGRAM ": sendto: %s\n", strerror(errno));
    }
}

/* Copies stdin to the socket and the socket to stdout at the same time, so a large echo cannot deadlock. */
static int command_connect(int argc, char **argv)
{
    if (argc != 4)
        die("usage: vsock-connect CID PORT");
    int fd = vsock_connect(parse_cid(argv[2]), parse_port(argv[3]));
    static unsigned char buffer[CHUNK];
    int stdin_open = 1;
    for (;;) {
        struct pollfd fds[2] = { { .fd = fd, .events = POLLIN }, { .fd = stdin_open ? 0 : -1, .events = POLLIN } };
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            die_errno("poll");
        }
        if (fds[0].revents) {
            ssize_t n = read_retrying(fd, buffer, sizeof buffer);
            if (n < 0)
                die_errno("socket read");
            if (n == 0)
                break;
            if (write_all(1, buffer, (size_t)n) < 0)
                die_errno("stdout write");
        }
        if (stdin_open && fds[1].revents) {
            ssize_t n = read_retrying(0, buffer, sizeof buffer);
            if (n < 0)
                die_errno("stdin read");
            if (n == 0) {
                stdin_open = 0;
                if (shutdown(fd, SHUT_WR) < 0)
                    die_errno("shutdown");
            } else if (write_all(fd, buffer, (size_t)n) < 0) {
                die_errno("socket write");
            }
        }
    }
    close(fd);
    return 0;
}

static int command_send(int argc, char **argv)
{
    if (argc != 5)
        die("usage: vsock-send CID PORT BYTES");
    uint32_t cid = parse_cid(argv[2]), port = parse_port(argv[3]);
    uint64_t total = parse_number(argv[4], "byte count", UINT64_MAX);
    int fd = vsock_connect(cid, port);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        die_errno("fcntl");
    static unsigned char out[CHUNK], in[CHUNK];
    uint64_t sent = 0;
    size_t pending_offset = 0, pending_length = 0;
    int write_closed = 0;
    double start = now_seconds();
    if (total == 0) {
        if (shutdown(fd, SHUT_WR) < 0)
            die_errno("shutdown");
        write_closed = 1;
    }
    /* Reads the reply while sending, so an echoing peer never stalls on a full buffer. */
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN | (write_closed ? 0 : POLLOUT) };
        if (poll(&pfd, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            die_errno("poll");
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(fd, in, sizeof in);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                die_errno("socket read");
            if (n == 0)
                break;
            if (n > 0 && write_all(1, in, (size_t)n) < 0)
                die_errno("stdout write");
        }
        if (!write_closed && (pfd.revents & POLLOUT)) {
            if (pending_length == 0) {
                pending_length = total - sent < sizeof out ? (size_t)(total - sent) : sizeof out;
                pending_offset = 0;
                fill_pattern(out, pending_length, sent);
            }
            ssize_t n = write(fd, out + pending_offset, pending_length);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                die_errno("socket write");
            if (n > 0) {
                pending_offset += (size_t)n;
                pending_length -= (size_t)n;
                sent += (uint64_t)n;
                if (sent == total) {
                    if (shutdown(fd, SHUT_WR) < 0)
                        die_errno("shutdown");
                    write_closed = 1;
                }
            }
        }
    }
    double elapsed = now_seconds() - start;
    close(fd);
    if (!write_closed)
        die("peer closed after %" PRIu64 " of %" PRIu64 " bytes", sent, total);
    fprintf(stderr, "sent %" PRIu64 " bytes in %.3f seconds\n", sent, elapsed);
    return 0;
}

static int command_recv(int argc, char **argv)
{
    if (argc != 5)
        die("usage: vsock-recv CID PORT BYTES");
    uint32_t cid = parse_cid(argv[2]), port = parse_port(argv[3]);
    uint64_t expected = parse_number(argv[4], "byte count", UINT64_MAX);
    int fd = vsock_connect(cid, port);
    double start = now_seconds();
    char request[32];
    int length = snprintf(request, sizeof request, "%" PRIu64 "\n", expected);
    if (write_all(fd, request, (size_t)length) < 0)
        die_errno("socket write");
    static unsigned char buffer[CHUNK];
    uint64_t received = 0;
    for (;;) {
        ssize_t n = read_retrying(fd, buffer, sizeof buffer);
        if (n < 0)
            die_errno("socket read");
        if (n == 0)
            break;
        size_t good = check_pattern(buffer, (size_t)n, received);
        if (good != (size_t)n)
            die("pattern mismatch at byte %" PRIu64, received + good);
        received += (uint64_t)n;
    }
    double elapsed = now_seconds() - start;
    close(fd);
    printf("received %" PRIu64 " bytes in %.3f seconds\n", received, elapsed);
    if (received != expected)
        die("expected %" PRIu64 " bytes, received %" PRIu64, expected, received);
    return 0;
}

static int command_local_cid(int argc, char **argv)
{
    (void)argv;
    if (argc != 2)
        die("usage: local-cid");
    int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_errno("/dev/vsock");
    unsigned int cid;
    if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
        die_errno("IOCTL_VM_SOCKETS_GET_LOCAL_CID");
    close(fd);
    /* Without a virtio-vsock device the kernel answers VMADDR_CID_ANY, or VMADDR_CID_LOCAL when its
     * loopback transport is built in; a guest's own CID is always above VMADDR_CID_HOST. */
    if (cid == VMADDR_CID_ANY || cid <= VMADDR_CID_HOST)
        die("no vsock device (the kernel reports CID %u)", cid);
    printf("%u\n", cid);
    return 0;
}

/* At most this many connects are under way at once, so a peer that drops SYNs cannot stall the whole batch. */
#define CONNECT_WINDOW 64
#define CONNECT_TIMEOUT_SECONDS 30
#define HOLD_BUFFER 4096

/* Lets this process hold count descriptors beside its own few (the guest runs it as root). */
static void raise_descriptor_limit(uint64_t count)
{
    struct rlimit limit = { .rlim_cur = count + 64, .rlim_max = count + 64 };
    struct rlimit current;
    if (getrlimit(RLIMIT_NOFILE, &current) == 0 && current.rlim_cur >= limit.rlim_cur)
        return;
    if (setrlimit(RLIMIT_NOFILE, &limit) < 0)
        die_errno("setrlimit(RLIMIT_NOFILE)");
}

struct held {
    struct pollfd *fds;
    size_t count, capacity;
};

static void hold_add(struct held *held, int fd)
{
    if (held->count == held->capacity) {
        held->capacity = held->capacity ? held->capacity * 2 : 256;
        held->fds = realloc(held->fds, held->capacity * sizeof *held->fds);
        if (held->fds == NULL)
            die("out of memory");
    }
    held->fds[held->count++] = (struct pollfd){ .fd = fd, .events = POLLIN };
}

/* Echoes on every held connection (a short write blocks: the peers only send small probes) and drops closed ones. */
static void hold_serve(struct held *held, size_t first)
{
    static unsigned char buffer[HOLD_BUFFER];
    for (size_t i = first; i < held->count; i++) {
        struct pollfd *entry = &held->fds[i];
        if (entry->fd < 0 || entry->revents == 0)
            continue;
        ssize_t n = read(entry->fd, buffer, sizeof buffer);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0 || write_all(entry->fd, buffer, (size_t)n) < 0) {
            close(entry->fd);
            entry->fd = -1;
        }
    }
}

static _Noreturn void hold_forever(struct held *held, int listener)
{
    if (listener >= 0)
        hold_add(held, listener);
    for (;;) {
        if (poll(held->fds, held->count, -1) < 0) {
            if (errno == EINTR)
                continue;
            die_errno("poll");
        }
        if (listener >= 0 && held->fds[held->count - 1].revents) {
            /* The listener moves to the end again once the new connections are added. */
            held->count--;
            for (;;) {
                int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
                if (fd < 0)
                    break;
                hold_add(held, fd);
            }
            hold_serve(held, 0);
            hold_add(held, listener);
            continue;
        }
        hold_serve(held, 0);
    }
}

/* Opens count connections to address, CONNECT_WINDOW at a time; reports the outcome on stdout and holds them. */
static _Noreturn void hold_connections(const char *name, int family, const struct sockaddr *address, socklen_t length,
                                       uint64_t count)
{
    raise_descriptor_limit(count);
    struct held held = { 0 };
    struct pending { int fd; double deadline; } window[CONNECT_WINDOW];
    size_t in_flight = 0;
    uint64_t started = 0, failed = 0, failures[256] = { 0 };
    while (started < count || in_flight > 0) {
        while (started < count && in_flight < CONNECT_WINDOW) {
            started++;
            int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (fd < 0)
                die_errno("socket");
            if (connect(fd, address, length) == 0) {
                hold_add(&held, fd);
            } else if (errno == EINPROGRESS) {
                window[in_flight++] = (struct pending){ fd, now_seconds() + CONNECT_TIMEOUT_SECONDS };
            } else {
                failures[errno < 256 ? errno : 0]++;
                failed++;
                close(fd);
            }
        }
        struct pollfd fds[CONNECT_WINDOW];
        for (size_t i = 0; i < in_flight; i++)
            fds[i] = (struct pollfd){ .fd = window[i].fd, .events = POLLOUT };
        if (in_flight > 0 && poll(fds, in_flight, 100) < 0 && errno != EINTR)
            die_errno("poll");
        double now = now_seconds();
        for (size_t i = in_flight; i-- > 0;) {
            int error = 0;
            if (fds[i].revents != 0) {
                socklen_t size = sizeof error;
                if (getsockopt(window[i].fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0)
                    error = errno;
            } else if (now > window[i].deadline) {
                error = ETIMEDOUT;
            } else {
                continue;
            }
            if (error == 0) {
                hold_add(&held, window[i].fd);
            } else {
                failures[error < 256 ? error : 0]++;
                failed++;
                close(window[i].fd);
            }
            window[i] = window[--in_flight];
        }
    }
    printf("%s: %zu established, %" PRIu64 " failed", name, held.count, failed);
    for (int error = 0; error < 256; error++)
        if (failures[error] > 0)
            printf(", %" PRIu64 " %s", failures[error], strerror(error));
    printf("\n");
    fflush(stdout);
    hold_forever(&held, -1);
}

static _Noreturn void command_tcp_hold(int argc, char **argv)
{
    if (argc != 5)
        die("usage: tcp-hold HOST PORT COUNT");
    uint32_t port = parse_port(argv[3]);
    if (port > 65535)
        die("invalid TCP port %" PRIu32, port);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, argv[2], &address.sin_addr) != 1)
        die("invalid IPv4 address '%s'", argv[2]);
    hold_connections("tcp-hold", AF_INET, (struct sockaddr *)&address, sizeof address,
                     parse_number(argv[4], "connection count", 1 << 20));
}

static _Noreturn void command_vsock_hold(int argc, char **argv)
{
    if (argc != 5)
        die("usage: vsock-hold CID PORT COUNT");
    struct sockaddr_vm address = { .svm_family = AF_VSOCK, .svm_cid = parse_cid(argv[2]), .svm_port = parse_port(argv[3]) };
    hold_connections("vsock-hold", AF_VSOCK, (struct sockaddr *)&address, sizeof address,
                     parse_number(argv[4], "connection count", 1 << 20));
}

static _Noreturn void command_vsock_hold_server(int argc, char **argv)
{
    if (argc != 3)
        die("usage: vsock-hold-server PORT");
    raise_descriptor_limit(16384);
    /* Many host programs connect at once: the backlog takes them until the loop accepts them. */
    int listener = vsock_listen(parse_port(argv[2]), 4096);
    if (fcntl(listener, F_SETFL, O_NONBLOCK) < 0)
        die_errno("fcntl");
    struct held held = { 0 };
    hold_forever(&held, listener);
}

static _Noreturn void usage(void)
{
    fprintf(stderr,
            "usage: " PROGRAM " COMMAND ARGS\n"
            "  vsock-echo PORT | vsock-discard PORT | vsock-source PORT | udp-echo PORT\n"
            "  vsock-connect CID PORT | vsock-send CID PORT BYTES | vsock-recv CID PORT BYTES\n"
            "  local-cid\n"
            "  tcp-hold HOST PORT COUNT | vsock-hold CID PORT COUNT | vsock-hold-server PORT\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    /* A peer that goes away must turn into a write error, not a silent death by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    const char *command = argv[1];
    if (strcmp(command, "vsock-echo") == 0)
        command_server(argc, argv, handle_echo);
    if (strcmp(command, "vsock-discard") == 0)
        command_server(argc, argv, handle_discard);
    if (strcmp(command, "vsock-source") == 0)
        command_server(argc, argv, handle_source);
    if (strcmp(command, "udp-echo") == 0)
        command_udp_echo(argc, argv);
    if (strcmp(command, "vsock-connect") == 0)
        return command_connect(argc, argv);
    if (strcmp(command, "vsock-send") == 0)
        return command_send(argc, argv);
    if (strcmp(command, "vsock-recv") == 0)
        return command_recv(argc, argv);
    if (strcmp(command, "local-cid") == 0)
        return command_local_cid(argc, argv);
    if (strcmp(command, "tcp-hold") == 0)
        command_tcp_hold(argc, argv);
    if (strcmp(command, "vsock-hold") == 0)
        command_vsock_hold(argc, argv);
    if (strcmp(command, "vsock-hold-server") == 0)
        command_vsock_hold_server(argc, argv);
    fprintf(stderr, PROGRAM ": unknown command '%s'\n", command);
    usage();
}
