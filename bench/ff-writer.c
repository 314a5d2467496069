// The writer of bench/first-fail.ts: 4 KiB O_DIRECT writes to a block device, one after
// the other, each logged with its CLOCK_MONOTONIC start and end (the clock of Node's
// process.hrtime) and its result, so the benchmark can tell which writes were submitted
// after SetFilter returned and what happened to them. Prints "ready" on stderr after
// its first successful write; stops on SIGTERM (or after a million writes) and prints
// its log on stdout: "start_ns end_ns result" per write (result 0 or -errno).
//   ff-writer DEVICE
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WRITES 1000000

struct rec {
	int64_t start, end;
	int result;
};

static volatile sig_atomic_t stopping;
static void on_term(int sig) { stopping = sig; }

static int64_t now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: ff-writer DEVICE\n");
		return 2;
	}
	struct sigaction sa = {.sa_handler = on_term};
	sigaction(SIGTERM, &sa, NULL);
	int fd = open(argv[1], O_WRONLY | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "ff-writer: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	void *buf;
	if (posix_memalign(&buf, 4096, 4096))
		return 1;
	memset(buf, 0x5a, 4096);
	static struct rec log[MAX_WRITES];
	int n = 0, ready = 0;
	while (n < MAX_WRITES && !stopping) {
		off_t off = (off_t)(n % 256) * 4096; // the first MiB
		int64_t t0 = now();
		ssize_t r = pwrite(fd, buf, 4096, off);
		int64_t t1 = now();
		int res = r == 4096 ? 0 : r < 0 ? -errno : -EIO;
		log[n++] = (struct rec){t0, t1, res};
		if (!ready && res == 0) {
			ready = 1;
			fprintf(stderr, "ready\n");
		}
	}
	for (int i = 0; i < n; i++)
		printf("%lld %lld %d\n", (long long)log[i].start, (long long)log[i].end, log[i].result);
	return 0;
}
