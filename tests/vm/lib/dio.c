// Direct I/O with the errno an application sees, for the VM tests: COUNT sectors at
// SECTOR of DEV with O_DIRECT, read or written, REPEAT times (default 1), then one line
// counting the outcomes by errno name, e.g. "ok=1488 ENODATA=512" (a single I/O prints
// "ok" or "ENOSPC"). Writes write zeros. Built on the host by the test (cc), run in the
// guest, which shares the host's root and so its glibc.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s DEV read|write SECTOR COUNT [REPEAT]\n", argv[0]);
		return 2;
	}
	int wr = !strcmp(argv[2], "write");
	off_t off = strtoll(argv[3], NULL, 10) * 512;
	size_t len = strtoul(argv[4], NULL, 10) * 512;
	long repeat = argc > 5 ? strtol(argv[5], NULL, 10) : 1;
	int fd = open(argv[1], (wr ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	void *buf;
	if (posix_memalign(&buf, 4096, len ? len : 4096))
		return 2;
	memset(buf, 0, len);
	long counts[4096] = { 0 }; /* by errno; [0]: ok */
	for (long i = 0; i < repeat; i++) {
		ssize_t n = wr ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);
		if (n == (ssize_t)len)
			counts[0]++;
		else if (n < 0 && errno > 0 && errno < 4096)
			counts[errno]++;
		else {
			fprintf(stderr, "short %s: %zd of %zu\n", argv[2], n, len);
			return 2;
		}
	}
	if (repeat == 1) {
		for (int e = 0; e < 4096; e++)
			if (counts[e])
				puts(e ? strerrorname_np(e) : "ok");
		return 0;
	}
	const char *sep = "";
	for (int e = 0; e < 4096; e++)
		if (counts[e]) {
			printf("%s%s=%ld", sep, e ? strerrorname_np(e) : "ok", counts[e]);
			sep = " ";
		}
	putchar('\n');
	return 0;
}
