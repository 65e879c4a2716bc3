/* A load generator for benchmarks/native.py: keeps WINDOW requests in flight and sends a
 * request for each answer it reads, for SECONDS; prints JSON {"per_second", "answers"}.
 * A Python loop tops out near 50,000 datagrams a second on these machines (measured
 * against a bare uvloop echo server), below what the servers under test answer, so the
 * load is made here, with recvmmsg/sendmmsg batches (UDP) or one pipelined stream (TCP).
 *
 *   netload udp|tcp|tcp1 HOST PORT SECONDS WINDOW REQUESTS_FILE LEN_OFFSET LEN_ADD
 *
 * tcp1: a connection per request, one at a time (WINDOW unused).
 *
 * REQUESTS_FILE: requests, each a 4-byte big-endian length and the bytes. Over TCP an
 * answer's length is the big-endian 32-bit integer at LEN_OFFSET plus LEN_ADD (Handle
 * protocol: 16 and 20; idres msgpack frames: 0 and 4). Built by benchmarks/native.py
 * with the system's cc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static unsigned char *reqs[100000];
static uint32_t lens[100000];
static size_t nreq;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void load(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char head[4];
    if (!f) { perror(path); exit(1); }
    while (nreq < 100000 && fread(head, 1, 4, f) == 4) {
        uint32_t n = ((uint32_t)head[0] << 24) | (head[1] << 16) | (head[2] << 8) | head[3];
        reqs[nreq] = malloc(n);
        if (fread(reqs[nreq], 1, n, f) != n) { fprintf(stderr, "short file\n"); exit(1); }
        lens[nreq++] = n;
    }
    fclose(f);
    if (!nreq) { fprintf(stderr, "no requests\n"); exit(1); }
}

static int udp(int fd, double seconds, int window) {
    static unsigned char bufs[BATCH][4096];
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec iin[BATCH], iout[BATCH];
    long answers = 0, bad = 0;
    size_t next = 0;
    struct timeval tv = {0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < window; i++, next++)
        send(fd, reqs[next % nreq], lens[next % nreq], 0);
    double start = now(), end = start + seconds;
    while (now() < end) {
        for (int i = 0; i < BATCH; i++) {
            iin[i].iov_base = bufs[i]; iin[i].iov_len = sizeof bufs[i];
            memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
            in[i].msg_hdr.msg_iov = &iin[i]; in[i].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) got = 0; else { perror("recvmmsg"); return 1; }
            for (int i = 0; i < window / 2; i++, next++)   /* answers lost: fill up again */
                send(fd, reqs[next % nreq], lens[next % nreq], 0);
            continue;
        }
        for (int i = 0; i < got; i++) {
            answers++;
            if (in[i].msg_len < 28 || bufs[i][27] != 1) bad++;
            iout[i].iov_base = reqs[next % nreq]; iout[i].iov_len = lens[next % nreq]; next++;
            memset(&out[i].msg_hdr, 0, sizeof out[i].msg_hdr);
            out[i].msg_hdr.msg_iov = &iout[i]; out[i].msg_hdr.msg_iovlen = 1;
        }
        if (got && sendmmsg(fd, out, got, 0) < 0) { perror("sendmmsg"); return 1; }
    }
    double took = now() - start;
    printf("{\"per_second\": %.1f, \"answers\": %ld, \"not_success\": %ld}\n", answers / took, answers, bad);
    return 0;
}

static int tcp(int fd, double seconds, int window, int off, int add) {
    static unsigned char buf[1 << 20], outbuf[1 << 20];
    size_t have = 0, next = 0;
    long answers = 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    size_t o = 0;
    for (int i = 0; i < window; i++, next++) { memcpy(outbuf + o, reqs[next % nreq], lens[next % nreq]); o += lens[next % nreq]; }
    if (write(fd, outbuf, o) != (ssize_t)o) { perror("write"); return 1; }
    double start = now(), end = start + seconds;
    while (now() < end) {
        ssize_t r = read(fd, buf + have, sizeof buf - have);
        if (r <= 0) { perror("read"); return 1; }
        have += r;
        size_t pos = 0; int done = 0;
        while (have - pos >= (size_t)(off + 4)) {
            uint32_t n = ((uint32_t)buf[pos + off] << 24) | (buf[pos + off + 1] << 16) | (buf[pos + off + 2] << 8) | buf[pos + off + 3];
            if (have - pos < n + add) break;
            pos += n + add; done++;
        }
        memmove(buf, buf + pos, have - pos); have -= pos;
        answers += done;
        o = 0;
        for (int i = 0; i < done; i++, next++) { memcpy(outbuf + o, reqs[next % nreq], lens[next % nreq]); o += lens[next % nreq]; }
        if (o && write(fd, outbuf, o) != (ssize_t)o) { perror("write"); return 1; }
    }
    double took = now() - start;
    printf("{\"per_second\": %.1f, \"answers\": %ld, \"not_success\": 0}\n", answers / took, answers);
    return 0;
}

/* A connection per request, one at a time (the Handle.Net server answers one request per
 * TCP connection and closes it, as its client expects). */
static int tcp1(struct sockaddr_in *a, double seconds, int off, int add) {
    static unsigned char buf[1 << 16];
    long answers = 0;
    size_t next = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct linger lg = {1, 0};   /* reset on close: no TIME_WAIT pile-up on the client */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        if (connect(fd, (struct sockaddr *)a, sizeof *a) < 0) { perror("connect"); return 1; }
        if (write(fd, reqs[next % nreq], lens[next % nreq]) < 0) { perror("write"); return 1; }
        next++;
        size_t have = 0;
        for (;;) {
            ssize_t r = read(fd, buf + have, sizeof buf - have);
            if (r <= 0) break;
            have += r;
            if (have >= (size_t)(off + 4)) {
                uint32_t n = ((uint32_t)buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3];
                if (have >= n + add) { answers++; break; }
            }
        }
        close(fd);
    }
    double took = now() - start;
    printf("{\"per_second\": %.1f, \"answers\": %ld, \"not_success\": 0}\n", answers / took, answers);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 9) { fprintf(stderr, "usage: netload udp|tcp HOST PORT SECONDS WINDOW FILE LEN_OFFSET LEN_ADD\n"); return 2; }
    int is_udp = strcmp(argv[1], "udp") == 0;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[3]));
    inet_pton(AF_INET, argv[2], &a.sin_addr);
    load(argv[6]);
    if (strcmp(argv[1], "tcp1") == 0) return tcp1(&a, atof(argv[4]), atoi(argv[7]), atoi(argv[8]));
    int fd = socket(AF_INET, is_udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    int big = 1 << 22;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
    return is_udp ? udp(fd, atof(argv[4]), atoi(argv[5]))
                  : tcp(fd, atof(argv[4]), atoi(argv[5]), atoi(argv[7]), atoi(argv[8]));
}
