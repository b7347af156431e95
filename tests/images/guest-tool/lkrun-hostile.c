/*
 * lkrun-hostile: a test guest that misbehaves on purpose, to check that lkrun's host services survive it.
 *
 *   net-flood IFACE MACS SEED
 *       Through a raw packet socket on IFACE: malformed frames (truncated Ethernet, IPv4 with bad IHL, total length,
 *       fragments and checksums, UDP with bad lengths, random bytes), a DHCP DISCOVER and a REQUEST from each of
 *       MACS made-up MACs, and an ARP flood (requests, and gratuitous replies for every address of the /24 but the
 *       interface's own, the gateway's included). Prints what it sent.
 *   vsock-garbage [QUEUE_SIZE]
 *       Takes the virtio vsock PCI device from its driver and drives it itself, from user space: sysfs enable, bus
 *       mastering through the config file, the BAR with the virtio capabilities mapped through resourceN, rings in
 *       locked memory whose physical addresses come from /proc/self/pagemap. It fills the transmit and receive
 *       rings with garbage (buffers outside guest memory, huge lengths, loops, bad next indexes, bad indirect
 *       tables, packet headers with bogus op, type, length, CID and ports), then moves the transmit ring's available
 *       index far ahead, then resets the device and gives it back to virtio-pci. Prints what the device returned.
 *       QUEUE_SIZE (64 unless given) is the size the driver sets, which need not be a power of two.
 * Needs root; meant for the throw-away test guest only.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>

#define PROGRAM "lkrun-hostile"
#include "die.h"

static uint64_t random_state = 88172645463325252ull;

/* xorshift64: reproducible from the seed, which is all a flood needs. */
static uint64_t next_random(void)
{
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return random_state;
}

static void random_bytes(unsigned char *buffer, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        buffer[i] = (unsigned char)next_random();
    }
}

static void put16(unsigned char *at, uint16_t value)
{
    at[0] = (unsigned char)(value >> 8);
    at[1] = (unsigned char)value;
}

static void put32(unsigned char *at, uint32_t value)
{
    put16(at, (uint16_t)(value >> 16));
    put16(at + 2, (uint16_t)value);
}

static void sleep_milliseconds(long milliseconds)
{
    struct timespec delay = {milliseconds / 1000, (milliseconds % 1000) * 1000000};
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------- net-flood */

#define ETH_HEADER 14
#define IP_HEADER 20
#define UDP_HEADER 8
#define DHCP_FIXED 240

struct flood {
    int socket;
    struct sockaddr_ll address;
    unsigned char mac[6];
    uint32_t own;     /* the interface's IPv4 address, host order */
    uint32_t gateway; /* .1 of its /24 */
    unsigned long sent;
    unsigned long refused;
};

static void send_frame(struct flood *flood, const unsigned char *frame, size_t length)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        if (sendto(flood->socket, frame, length, 0, (const struct sockaddr *)&flood->address, sizeof flood->address) >= 0) {
            flood->sent++;
            return;
        }
        if (errno != ENOBUFS && errno != EAGAIN) {
            /* The kernel refuses some frames outright (too short for it to send): that is the kernel's check, not lkrun's. */
            flood->refused++;
            return;
        }
        sleep_milliseconds(1);
    }
    flood->refused++;
}

static uint16_t checksum(const unsigned char *data, size_t length)
{
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < length; i += 2) {
        sum += (uint32_t)(data[i] << 8 | data[i + 1]);
    }
    if (length % 2) {
        sum += (uint32_t)(data[length - 1] << 8);
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return (uint16_t)~sum;
}

static void ethernet(unsigned char *frame, const unsigned char *destination, const unsigned char *source, uint16_t type)
{
    memcpy(frame, destination, 6);
    memcpy(frame + 6, source, 6);
    put16(frame + 12, type);
}

/* An IPv4 header with a correct checksum; callers break what they want broken afterwards. */
static void ipv4(unsigned char *ip, uint8_t protocol, uint32_t source, uint32_t destination, uint16_t total, uint16_t fragment)
{
    memset(ip, 0, IP_HEADER);
    ip[0] = 0x45;
    put16(ip + 2, total);
    put16(ip + 4, (uint16_t)next_random());
    put16(ip + 6, fragment);
    ip[8] = 64;
    ip[9] = protocol;
    put32(ip + 12, source);
    put32(ip + 16, destination);
    put16(ip + 10, checksum(ip, IP_HEADER));
}

static const unsigned char broadcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const unsigned char gateway_mac[6] = {0x52, 0x55, 192, 168, 65, 1};

static void flood_malformed(struct flood *flood, int rounds)
{
    unsigned char frame[1600];
    for (int round = 0; round < rounds; round++) {
        uint32_t target = round % 2 ? flood->gateway : flood->gateway | 0xfe;

        /* Truncated Ethernet, and a bare header. */
        for (size_t length = 1; length <= ETH_HEADER; length++) {
            random_bytes(frame, length);
            if (length == ETH_HEADER) {
                ethernet(frame, gateway_mac, flood->mac, round % 2 ? 0x0800 : 0x0806);
            }
            send_frame(flood, frame, length);
        }

        /* IPv4 headers that lie: every IHL below 5 and above what the frame holds, total lengths too short, too
         * long and zero, a wrong checksum, a version that is not 4. */
        for (int variant = 0; variant < 12; variant++) {
            size_t length = ETH_HEADER + IP_HEADER + UDP_HEADER + 8;
            memset(frame, 0, sizeof frame);
            ethernet(frame, gateway_mac, flood->mac, 0x0800);
            unsigned char *ip = frame + ETH_HEADER;
            ipv4(ip, 17, flood->own, target, IP_HEADER + UDP_HEADER + 8, 0);
            put16(ip + IP_HEADER, 40000);
            put16(ip + IP_HEADER + 2, 9);
            put16(ip + IP_HEADER + 4, UDP_HEADER + 8);
            switch (variant) {
            case 0: case 1: case 2: case 3: case 4: ip[0] = (unsigned char)(0x40 | variant); break;
            case 5: ip[0] = 0x4f; break;
            case 6: put16(ip + 2, 0); break;
            case 7: put16(ip + 2, 19); break;
            case 8: put16(ip + 2, 0xffff); break;
            case 9: put16(ip + 10, (uint16_t)(ip[10] << 8 | ip[11]) ^ 0x5a5a); break;
            case 10: ip[0] = 0x65; break;
            default: length = ETH_HEADER + 10; break; /* a header cut short */
            }
            send_frame(flood, frame, length);
        }

        /* Fragments: a first one that never gets its rest, a last one without a first, one at the largest
         * offset, overlapping pairs, and fragments too small to hold a UDP header. */
        uint16_t fragments[][2] = {{0x2000, 64}, {0x0001, 64}, {0x1fff, 64}, {0x2000, 32}, {0x2002, 32}, {0x2000, 4}, {0x0000 | 0x0001, 4}};
        for (size_t i = 0; i < sizeof fragments / sizeof fragments[0]; i++) {
            uint16_t payload = fragments[i][1];
            memset(frame, 0, sizeof frame);
            ethernet(frame, gateway_mac, flood->mac, 0x0800);
            ipv4(frame + ETH_HEADER, 17, flood->own, target, (uint16_t)(IP_HEADER + payload), fragments[i][0]);
            random_bytes(frame + ETH_HEADER + IP_HEADER, payload);
            send_frame(flood, frame, ETH_HEADER + IP_HEADER + payload);
        }

        /* UDP whose length is zero, below its header, beyond the packet; DNS and DHCP servers fed random bytes. */
        uint16_t udp_lengths[] = {0, 7, 9, 200, 0xffff};
        for (size_t i = 0; i < sizeof udp_lengths / sizeof udp_lengths[0]; i++) {
            memset(frame, 0, sizeof frame);
            ethernet(frame, gateway_mac, flood->mac, 0x0800);
            ipv4(frame + ETH_HEADER, 17, flood->own, i % 2 ? flood->gateway | 0xfe : flood->gateway, IP_HEADER + UDP_HEADER + 16, 0);
            unsigned char *udp = frame + ETH_HEADER + IP_HEADER;
            put16(udp, 40001);
            put16(udp + 2, i % 2 ? 53 : 67);
            put16(udp + 4, udp_lengths[i]);
            random_bytes(udp + UDP_HEADER, 16);
            send_frame(flood, frame, ETH_HEADER + IP_HEADER + UDP_HEADER + 16);
        }

        /* Random bytes: as IPv4, as ARP, as an unknown type, and wholly random. */
        uint16_t types[] = {0x0800, 0x0806, 0x86dd, 0x1234};
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            size_t length = ETH_HEADER + 1 + next_random() % 1400;
            random_bytes(frame, length);
            ethernet(frame, gateway_mac, flood->mac, types[i]);
            send_frame(flood, frame, length);
        }
        size_t length = 1 + next_random() % 1500;
        random_bytes(frame, length);
        send_frame(flood, frame, length);
    }
}

static void made_up_mac(unsigned char *mac, unsigned index)
{
    /* Locally administered, unicast, never the interface's own (which is 52:54:... or lkrun's stable one). */
    mac[0] = 0x0a;
    mac[1] = 0xbd;
    mac[2] = 0x00;
    mac[3] = (unsigned char)(index >> 16);
    mac[4] = (unsigned char)(index >> 8);
    mac[5] = (unsigned char)index;
}

static void send_dhcp(struct flood *flood, const unsigned char *mac, uint8_t type, uint32_t requested)
{
    unsigned char frame[ETH_HEADER + IP_HEADER + UDP_HEADER + DHCP_FIXED + 64];
    memset(frame, 0, sizeof frame);
    ethernet(frame, broadcast_mac, mac, 0x0800);
    unsigned char *dhcp = frame + ETH_HEADER + IP_HEADER + UDP_HEADER;
    dhcp[0] = 1;
    dhcp[1] = 1;
    dhcp[2] = 6;
    put32(dhcp + 4, (uint32_t)next_random());
    put16(dhcp + 10, 0x8000);
    memcpy(dhcp + 28, mac, 6);
    put32(dhcp + 236, 0x63825363);
    unsigned char *option = dhcp + DHCP_FIXED;
    *option++ = 53;
    *option++ = 1;
    *option++ = type;
    if (requested != 0) {
        *option++ = 50;
        *option++ = 4;
        put32(option, requested);
        option += 4;
        *option++ = 54;
        *option++ = 4;
        put32(option, flood->gateway);
        option += 4;
    }
    *option++ = 55;
    *option++ = 3;
    *option++ = 1;
    *option++ = 3;
    *option++ = 6;
    *option++ = 255;
    size_t dhcp_length = (size_t)(option - dhcp);
    uint16_t udp_length = (uint16_t)(UDP_HEADER + dhcp_length);
    ipv4(frame + ETH_HEADER, 17, 0, 0xffffffff, (uint16_t)(IP_HEADER + udp_length), 0);
    unsigned char *udp = frame + ETH_HEADER + IP_HEADER;
    put16(udp, 68);
    put16(udp + 2, 67);
    put16(udp + 4, udp_length);
    send_frame(flood, frame, ETH_HEADER + IP_HEADER + udp_length);
}

static void flood_dhcp(struct flood *flood, unsigned macs)
{
    unsigned char mac[6];
    for (unsigned i = 0; i < macs; i++) {
        made_up_mac(mac, i);
        send_dhcp(flood, mac, 1, 0);
        /* A REQUEST as if the storm's clients had been offered addresses, the interface's own among them. */
        send_dhcp(flood, mac, 3, i % 7 == 0 ? flood->own : (flood->gateway & 0xffffff00) | (2 + i % 252));
    }
}

static void send_arp(struct flood *flood, const unsigned char *sender_mac, uint16_t operation, uint32_t sender, const unsigned char *target_mac, uint32_t target)
{
    unsigned char frame[ETH_HEADER + 28];
    ethernet(frame, operation == 1 ? broadcast_mac : target_mac, sender_mac, 0x0806);
    unsigned char *arp = frame + ETH_HEADER;
    put16(arp, 1);
    put16(arp + 2, 0x0800);
    arp[4] = 6;
    arp[5] = 4;
    put16(arp + 6, operation);
    memcpy(arp + 8, sender_mac, 6);
    put32(arp + 14, sender);
    memcpy(arp + 18, target_mac, 6);
    put32(arp + 24, target);
    send_frame(flood, frame, sizeof frame);
}

static void flood_arp(struct flood *flood, int rounds)
{
    unsigned char mac[6];
    uint32_t network = flood->gateway & 0xffffff00;
    for (int round = 0; round < rounds; round++) {
        for (uint32_t host = 0; host < 256; host++) {
            uint32_t address = network | host;
            if (address == flood->own) {
                /* Claiming its own address for another MAC would cut the guest off: its own business, not lkrun's. */
                continue;
            }
            made_up_mac(mac, 0x100000u + (uint32_t)round * 256 + host);
            send_arp(flood, mac, 1, address, broadcast_mac, network | ((host * 7 + 3) & 0xff));
            send_arp(flood, mac, 2, address, broadcast_mac, address);
            send_arp(flood, mac, 2, address, gateway_mac, flood->gateway);
        }
    }
}

static int command_net_flood(int argc, char **argv)
{
    if (argc != 5) {
        die("usage: net-flood IFACE MACS SEED");
    }
    const char *name = argv[2];
    unsigned macs = (unsigned)strtoul(argv[3], NULL, 10);
    random_state ^= strtoull(argv[4], NULL, 10) * 0x9e3779b97f4a7c15ull;

    struct flood flood = {0};
    flood.socket = socket(AF_PACKET, SOCK_RAW, 0);
    if (flood.socket < 0) {
        die_errno("packet socket");
    }
    struct ifreq request = {0};
    snprintf(request.ifr_name, sizeof request.ifr_name, "%s", name);
    if (ioctl(flood.socket, SIOCGIFHWADDR, &request) != 0) {
        die_errno(name);
    }
    memcpy(flood.mac, request.ifr_hwaddr.sa_data, 6);
    if (ioctl(flood.socket, SIOCGIFADDR, &request) != 0) {
        die_errno("the interface's address");
    }
    flood.own = ntohl(((struct sockaddr_in *)&request.ifr_addr)->sin_addr.s_addr);
    flood.gateway = (flood.own & 0xffffff00) | 1;
    flood.address.sll_family = AF_PACKET;
    flood.address.sll_ifindex = (int)if_nametoindex(name);
    flood.address.sll_halen = 6;
    memcpy(flood.address.sll_addr, broadcast_mac, 6);

    flood_malformed(&flood, 100);
    unsigned long malformed = flood.sent;
    flood_dhcp(&flood, macs);
    unsigned long dhcp = flood.sent - malformed;
    flood_arp(&flood, 4);
    unsigned long arp = flood.sent - malformed - dhcp;
    flood_malformed(&flood, 100);
    printf("net-flood: sent %lu frames (%lu malformed, %lu dhcp, %lu arp), %lu refused by the kernel\n",
        flood.sent, flood.sent - dhcp - arp, dhcp, arp, flood.refused);
    close(flood.socket);
    return 0;
}

/* ------------------------------------------------------------ vsock-garbage */

#define PAGE 4096
#define MAX_QUEUE_SIZE 256 /* a descriptor table still fits one page */
#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_VSOCK_DEVICE 0x1053

#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8

#define DESC_NEXT 1
#define DESC_WRITE 2
#define DESC_INDIRECT 4

/* The common configuration structure of virtio 1.x over PCI (offsets in bytes). */
#define COMMON_DEVICE_FEATURE_SELECT 0x00
#define COMMON_DEVICE_FEATURE 0x04
#define COMMON_DRIVER_FEATURE_SELECT 0x08
#define COMMON_DRIVER_FEATURE 0x0c
#define COMMON_STATUS 0x14
#define COMMON_QUEUE_SELECT 0x16
#define COMMON_QUEUE_SIZE 0x18
#define COMMON_QUEUE_ENABLE 0x1c
#define COMMON_QUEUE_NOTIFY_OFF 0x1e
#define COMMON_QUEUE_DESC 0x20
#define COMMON_QUEUE_DRIVER 0x28
#define COMMON_QUEUE_DEVICE 0x30

/* The queue size the driver sets; any size below the device's maximum reaches the device, power of two or not. */
static uint16_t queue_size = 64;

struct descriptor {
    uint64_t address;
    uint32_t length;
    uint16_t flags;
    uint16_t next;
};

/* A page of locked memory and its guest-physical address. */
struct page {
    unsigned char *data;
    uint64_t physical;
};

struct ring {
    int index;
    struct descriptor *table; /* page of its own */
    uint16_t *available;      /* flags, idx, ring[queue_size] */
    uint16_t *used;           /* flags, idx, then {id, len} elements */
    uint64_t table_physical, available_physical, used_physical;
    uint16_t posted;
};

struct device {
    char path[512];
    volatile unsigned char *common;
    volatile unsigned char *notify;
    uint32_t notify_multiplier;
};

static void write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) {
        die_errno(path);
    }
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        die_errno(path);
    }
    close(fd);
}

static unsigned long read_hex(const char *path)
{
    FILE *file = fopen(path, "r");
    unsigned long value = 0;
    if (file == NULL || fscanf(file, "%lx", &value) != 1) {
        die("%s: unreadable", path);
    }
    fclose(file);
    return value;
}

static int find_vsock_device(char *path, size_t size)
{
    DIR *directory = opendir("/sys/bus/pci/devices");
    if (directory == NULL) {
        die_errno("/sys/bus/pci/devices");
    }
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        if (entry->d_name[0] == '.') {
            continue;
        }
        char file[600];
        snprintf(file, sizeof file, "/sys/bus/pci/devices/%s/vendor", entry->d_name);
        unsigned long vendor = read_hex(file);
        snprintf(file, sizeof file, "/sys/bus/pci/devices/%s/device", entry->d_name);
        if (vendor == VIRTIO_VENDOR && read_hex(file) == VIRTIO_VSOCK_DEVICE) {
            snprintf(path, size, "/sys/bus/pci/devices/%s", entry->d_name);
            closedir(directory);
            return 0;
        }
    }
    closedir(directory);
    return -1;
}

static struct page lock_page(void)
{
    struct page page;
    page.data = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE | MAP_LOCKED, -1, 0);
    if (page.data == MAP_FAILED) {
        die_errno("mmap");
    }
    if (mlock(page.data, PAGE) != 0) {
        die_errno("mlock");
    }
    memset(page.data, 0, PAGE);
    int pagemap = open("/proc/self/pagemap", O_RDONLY);
    if (pagemap < 0) {
        die_errno("/proc/self/pagemap");
    }
    uint64_t entry;
    if (pread(pagemap, &entry, sizeof entry, (off_t)((uintptr_t)page.data / PAGE * sizeof entry)) != sizeof entry) {
        die_errno("/proc/self/pagemap");
    }
    close(pagemap);
    uint64_t frame = entry & ((1ull << 55) - 1);
    if (!(entry >> 63) || frame == 0) {
        die("/proc/self/pagemap: no frame for a locked page (entry 0x%" PRIx64 ")", entry);
    }
    page.physical = frame * PAGE;
    return page;
}

static void common_write16(struct device *device, int offset, uint16_t value)
{
    *(volatile uint16_t *)(device->common + offset) = value;
}

static void common_write32(struct device *device, int offset, uint32_t value)
{
    *(volatile uint32_t *)(device->common + offset) = value;
}

static void common_write64(struct device *device, int offset, uint64_t value)
{
    common_write32(device, offset, (uint32_t)value);
    common_write32(device, offset + 4, (uint32_t)(value >> 32));
}

static uint8_t status(struct device *device)
{
    return device->common[COMMON_STATUS];
}

static void set_status(struct device *device, uint8_t value)
{
    device->common[COMMON_STATUS] = value;
}

static void reset(struct device *device)
{
    set_status(device, 0);
    for (int i = 0; i < 1000 && status(device) != 0; i++) {
        sleep_milliseconds(1);
    }
    if (status(device) != 0) {
        die("the device did not reset");
    }
}

/* Maps the BAR a virtio capability points into; returns the capability's address inside it. */
static volatile unsigned char *map_capability(const char *device_path, int bar, uint32_t offset, uint32_t length)
{
    char path[600];
    snprintf(path, sizeof path, "%s/resource%d", device_path, bar);
    int fd = open(path, O_RDWR | O_SYNC);
    if (fd < 0) {
        die_errno(path);
    }
    struct stat info;
    if (fstat(fd, &info) != 0 || (uint64_t)info.st_size < (uint64_t)offset + length) {
        die("%s: smaller than its capability", path);
    }
    unsigned char *base = mmap(NULL, (size_t)info.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        die_errno(path);
    }
    close(fd);
    return base + offset;
}

/* Unbinds the driver, enables the device with bus mastering (INTx off: nobody would take the interrupts) and
 * finds its common and notify structures from the capability list. */
static void take_device(struct device *device)
{
    if (find_vsock_device(device->path, sizeof device->path) != 0) {
        die("no virtio vsock PCI device (q35 machine?)");
    }
    const char *address = strrchr(device->path, '/') + 1;
    char path[600];
    snprintf(path, sizeof path, "%s/driver/unbind", device->path);
    if (access(path, F_OK) == 0) {
        write_text(path, address);
    }
    snprintf(path, sizeof path, "%s/enable", device->path);
    write_text(path, "1");

    snprintf(path, sizeof path, "%s/config", device->path);
    int config = open(path, O_RDWR);
    unsigned char space[256];
    if (config < 0 || pread(config, space, sizeof space, 0) != (ssize_t)sizeof space) {
        die_errno(path);
    }
    uint16_t command = (uint16_t)(space[4] | space[5] << 8);
    command |= 0x0002 | 0x0004 | 0x0400; /* memory space, bus master, INTx disabled */
    unsigned char bytes[2] = {(unsigned char)command, (unsigned char)(command >> 8)};
    if (pwrite(config, bytes, 2, 4) != 2) {
        die_errno(path);
    }
    close(config);
    if (!(space[6] & 0x10)) {
        die("%s: no capability list", path);
    }
    for (int at = space[0x34] & 0xfc, hops = 0; at != 0 && hops < 48; at = space[at + 1] & 0xfc, hops++) {
        if (space[at] != 0x09) {
            continue;
        }
        int type = space[at + 3];
        int bar = space[at + 4];
        uint32_t offset, length;
        memcpy(&offset, space + at + 8, 4);
        memcpy(&length, space + at + 12, 4);
        if (type == 1 && device->common == NULL) {
            device->common = map_capability(device->path, bar, offset, length);
        } else if (type == 2 && device->notify == NULL) {
            memcpy(&device->notify_multiplier, space + at + 16, 4);
            device->notify = map_capability(device->path, bar, offset, length);
        }
    }
    if (device->common == NULL || device->notify == NULL) {
        die("%s: no virtio common or notify capability", device->path);
    }
}

static void give_back(struct device *device)
{
    const char *address = strrchr(device->path, '/') + 1;
    char path[600];
    snprintf(path, sizeof path, "%s/config", device->path);
    int config = open(path, O_RDWR);
    unsigned char bytes[2];
    if (config < 0 || pread(config, bytes, 2, 4) != 2) {
        die_errno(path);
    }
    bytes[0] &= (unsigned char)~0x04; /* bus mastering off until the driver turns it on */
    bytes[1] &= (unsigned char)~0x04; /* INTx back on */
    if (pwrite(config, bytes, 2, 4) != 2) {
        die_errno(path);
    }
    close(config);
    snprintf(path, sizeof path, "%s/enable", device->path);
    write_text(path, "0");
    write_text("/sys/bus/pci/drivers/virtio-pci/bind", address);
}

static struct ring make_ring(int index)
{
    struct page table = lock_page();
    struct page rings = lock_page();
    struct ring ring = {
        .index = index,
        .table = (struct descriptor *)table.data,
        .available = (uint16_t *)rings.data,
        .used = (uint16_t *)(rings.data + PAGE / 2),
        .table_physical = table.physical,
        .available_physical = rings.physical,
        .used_physical = rings.physical + PAGE / 2,
    };
    return ring;
}

static void start_device(struct device *device, struct ring *rings, int count)
{
    reset(device);
    set_status(device, STATUS_ACKNOWLEDGE);
    set_status(device, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    /* VIRTIO_F_VERSION_1 (bit 32), and VIRTIO_RING_F_INDIRECT_DESC (bit 28) when offered, which opens the
     * device's indirect path to the garbage too. */
    common_write32(device, COMMON_DEVICE_FEATURE_SELECT, 0);
    uint32_t offered = *(volatile uint32_t *)(device->common + COMMON_DEVICE_FEATURE);
    common_write32(device, COMMON_DRIVER_FEATURE_SELECT, 0);
    common_write32(device, COMMON_DRIVER_FEATURE, offered & (1u << 28));
    common_write32(device, COMMON_DRIVER_FEATURE_SELECT, 1);
    common_write32(device, COMMON_DRIVER_FEATURE, 1);
    set_status(device, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(status(device) & STATUS_FEATURES_OK)) {
        die("the device refused the features");
    }
    for (int i = 0; i < count; i++) {
        struct ring *ring = &rings[i];
        memset(ring->table, 0, PAGE);
        memset(ring->available, 0, PAGE);
        ring->posted = 0;
        common_write16(device, COMMON_QUEUE_SELECT, (uint16_t)ring->index);
        common_write16(device, COMMON_QUEUE_SIZE, queue_size);
        common_write64(device, COMMON_QUEUE_DESC, ring->table_physical);
        common_write64(device, COMMON_QUEUE_DRIVER, ring->available_physical);
        common_write64(device, COMMON_QUEUE_DEVICE, ring->used_physical);
        common_write16(device, COMMON_QUEUE_ENABLE, 1);
    }
    set_status(device, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
}

static void kick(struct device *device, struct ring *ring)
{
    common_write16(device, COMMON_QUEUE_SELECT, (uint16_t)ring->index);
    uint16_t offset = *(volatile uint16_t *)(device->common + COMMON_QUEUE_NOTIFY_OFF);
    __sync_synchronize();
    *(volatile uint16_t *)(device->notify + (size_t)offset * device->notify_multiplier) = (uint16_t)ring->index;
}

static uint16_t used_index(struct ring *ring)
{
    return __atomic_load_n(&ring->used[1], __ATOMIC_ACQUIRE);
}

/* Publishes head as the next available entry. */
static void post(struct ring *ring, uint16_t head)
{
    ring->available[2 + ring->posted % queue_size] = head;
    ring->posted++;
    __atomic_store_n(&ring->available[1], ring->posted, __ATOMIC_RELEASE);
}

static uint16_t wait_used(struct ring *ring, uint16_t expected)
{
    for (int i = 0; i < 300 && used_index(ring) != expected; i++) {
        sleep_milliseconds(10);
    }
    return used_index(ring);
}

/* A vsock packet header (little-endian on the wire, as on x86). */
struct vsock_header {
    uint64_t source_cid, destination_cid;
    uint32_t source_port, destination_port, length;
    uint16_t type, op;
    uint32_t flags, buffer_allocation, forward_count;
} __attribute__((packed));

static void header_at(unsigned char *at, uint64_t source_cid, uint32_t destination_port, uint32_t length, uint16_t type, uint16_t op)
{
    struct vsock_header header = {source_cid, 2, 1000 + destination_port, destination_port, length, type, op, 0, 65536, 0};
    memcpy(at, &header, sizeof header);
}

static int command_vsock_garbage(int argc, char **argv)
{
    if (argc > 3) {
        die("usage: vsock-garbage [QUEUE_SIZE]");
    }
    if (argc == 3) {
        unsigned long size = strtoul(argv[2], NULL, 10);
        if (size < 1 || size > MAX_QUEUE_SIZE) {
            die("vsock-garbage: queue size %s is not between 1 and %d", argv[2], MAX_QUEUE_SIZE);
        }
        queue_size = (uint16_t)size;
    }
    struct device device = {0};
    take_device(&device);
    struct ring rings[2] = {make_ring(0), make_ring(1)};
    struct ring *receive = &rings[0], *transmit = &rings[1];
    struct page data = lock_page();
    struct page indirect = lock_page();
    const uint64_t outside = 0xfffffff000000000ull;
    start_device(&device, rings, 2);

    /* Transmit chains, each broken its own way; the ring itself stays sound, so each comes back unused. */
    struct descriptor *t = transmit->table;
    const int header = (int)sizeof(struct vsock_header);
    for (int i = 0; i < 8; i++) {
        uint16_t ops[] = {99, 1, 5, 3, 2, 0, 6, 1};
        uint16_t types[] = {1, 1, 1, 1, 7, 1, 1, 2};
        uint32_t lengths[] = {0, 0, 0xffffffff, 0, 0, 64, 0, 0};
        header_at(data.data + i * 64, i == 6 ? 1234 : 3, i == 1 ? 9999 : 0xfffffff0u - (uint32_t)i, lengths[i], types[i], ops[i]);
        t[i] = (struct descriptor){data.physical + (uint64_t)i * 64, (uint32_t)header, 0, 0};
    }
    t[8] = (struct descriptor){outside, (uint32_t)header, 0, 0};                       /* outside guest memory */
    t[9] = (struct descriptor){data.physical, 0xffffffff, 0, 0};                        /* a huge length */
    t[10] = (struct descriptor){data.physical, (uint32_t)header, DESC_NEXT, 10};        /* a loop onto itself */
    t[11] = (struct descriptor){data.physical, (uint32_t)header, DESC_NEXT, 12};        /* a loop of two */
    t[12] = (struct descriptor){data.physical, (uint32_t)header, DESC_NEXT, 11};
    t[13] = (struct descriptor){data.physical, (uint32_t)header, DESC_NEXT, 4000};      /* next beyond the table */
    t[14] = (struct descriptor){data.physical, 8, DESC_WRITE | DESC_NEXT, 15};          /* writable before readable */
    t[15] = (struct descriptor){data.physical, (uint32_t)header, 0, 0};
    t[16] = (struct descriptor){indirect.physical, 24, DESC_INDIRECT, 0};               /* an indirect table of 1.5 entries */
    t[17] = (struct descriptor){outside, 64, DESC_INDIRECT, 0};                         /* an indirect table outside memory */
    t[18] = (struct descriptor){indirect.physical, 16 * 4, DESC_INDIRECT, 0};           /* nested, looping indirect */
    t[19] = (struct descriptor){data.physical, 4, 0, 0};                                /* a header cut short */
    struct descriptor *table = (struct descriptor *)indirect.data;
    table[0] = (struct descriptor){indirect.physical, 64, DESC_INDIRECT, 0};
    table[1] = (struct descriptor){data.physical, (uint32_t)header, DESC_NEXT, 2};
    table[2] = (struct descriptor){data.physical, (uint32_t)header, DESC_NEXT, 1};
    for (uint16_t head = 0; head < 20; head++) {
        post(transmit, head);
    }

    /* Receive buffers the device may not write a packet into: readable, too small, outside memory, looping. */
    struct descriptor *r = receive->table;
    r[0] = (struct descriptor){data.physical + 2048, 64, 0, 0};
    r[1] = (struct descriptor){data.physical + 2048, 4, DESC_WRITE, 0};
    r[2] = (struct descriptor){outside, 64, DESC_WRITE, 0};
    r[3] = (struct descriptor){data.physical + 2048, 64, DESC_WRITE | DESC_NEXT, 3};
    r[4] = (struct descriptor){data.physical + 2048, 0xffffffff, DESC_WRITE, 0};
    for (uint16_t head = 0; head < 5; head++) {
        post(receive, head);
    }
    kick(&device, receive);
    kick(&device, transmit);
    printf("vsock-garbage: device %s driven, transmit %u of %u chains returned, receive %u of %u\n",
        device.path, wait_used(transmit, transmit->posted), transmit->posted, wait_used(receive, receive->posted), receive->posted);

    /* The transmit ring's available index far ahead of anything the queue can hold: the ring is corrupt. */
    uint16_t returned = used_index(transmit);
    transmit->posted += 1000;
    __atomic_store_n(&transmit->available[1], transmit->posted, __ATOMIC_RELEASE);
    /* And a head beyond the queue in the receive ring. */
    post(receive, 200);
    kick(&device, transmit);
    kick(&device, receive);
    sleep_milliseconds(500);
    printf("vsock-garbage: available index moved 1000 ahead, %u more chains returned\n", (unsigned)(uint16_t)(used_index(transmit) - returned));

    reset(&device);
    give_back(&device);
    printf("vsock-garbage: device reset and given back to virtio-pci\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        die("usage: net-flood IFACE MACS SEED | vsock-garbage [QUEUE_SIZE]");
    }
    if (strcmp(argv[1], "net-flood") == 0) {
        return command_net_flood(argc, argv);
    }
    if (strcmp(argv[1], "vsock-garbage") == 0) {
        return command_vsock_garbage(argc, argv);
    }
    die("unknown command %s", argv[1]);
}
