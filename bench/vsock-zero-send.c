/*
 * vsock-zero-send CID PORT BYTES: the guest side of bench/vsock.sh's guest-to-host transfer. Writes BYTES zero
 * bytes to vsock CID:PORT in 64 KiB writes from one buffer, half-closes and waits for the peer to close: the
 * vsock counterpart of "dd if=/dev/zero of=/dev/vportNp1", with no per-byte work in the guest.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: vsock-zero-send CID PORT BYTES\n");
        return 2;
    }
    static char buffer[64 * 1024];
    unsigned long long total = strtoull(argv[3], NULL, 10), sent = 0;
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm address = { .svm_family = AF_VSOCK, .svm_cid = (unsigned)atoi(argv[1]), .svm_port = (unsigned)atoi(argv[2]) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        fprintf(stderr, "vsock-zero-send: connect: %s\n", strerror(errno));
        return 1;
    }
    while (sent < total) {
        size_t length = total - sent < sizeof buffer ? (size_t)(total - sent) : sizeof buffer;
        ssize_t n = write(fd, buffer, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "vsock-zero-send: write: %s\n", strerror(errno));
            return 1;
        }
        sent += (unsigned long long)n;
    }
    shutdown(fd, SHUT_WR);
    while (read(fd, buffer, sizeof buffer) > 0)
        ;
    close(fd);
    return 0;
}
