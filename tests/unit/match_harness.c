/*
 * Host harness for the match rule: includes bpf/iofilter_match.h - the very code
 * the BPF program runs - and drives it from a line script on stdin:
 *   F major minor expires_ns max_failures prob   add a filter (index = order)
 *   R start end ops filter                       add a range (whole-disk sectors)
 *   NOW ns | RAND u32                            the clock and the random source
 *   IO disk_major disk_minor dev_major dev_minor sector nr_sectors ops
 *                                                prints "<fail> <filter budget...> | <matched>/<failed> ..."
 *   RESET                                        empty entry, zero counters
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>

#include "iofilter.h"

static struct iof_counter counters[IOF_SLOTS_PER_DISK];
static unsigned long long now_ns;
static unsigned rand_u32;

#define IOF_COUNTER(slot) ((slot) < IOF_SLOTS_PER_DISK ? &counters[(slot)] : NULL)
#define IOF_NOW_NS() (now_ns)
#define IOF_RANDOM_U32() (rand_u32)
#define IOF_FETCH_ADD(p, v) __sync_fetch_and_add((p), (v))

#include "iofilter_match.h"

static int by_start(const void *a, const void *b) {
	const struct iof_range *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

int main(void) {
	static struct iof_disk d;
	char line[512];
	while (fgets(line, sizeof line, stdin)) {
		unsigned long long a, b, c, e;
		unsigned x, y;
		if (!strncmp(line, "RESET", 5)) {
			memset(&d, 0, sizeof d);
			memset(counters, 0, sizeof counters);
		} else if (sscanf(line, "F %u %u %llu %llu %llu", &x, &y, &a, &b, &c) == 5) {
			struct iof_filter *fl = &d.filters[d.nr_filters];
			fl->dev.major = x;
			fl->dev.minor = y;
			fl->expires_ns = a;
			fl->max_failures = b;
			fl->prob = (unsigned)c;
			fl->counter = IOF_MAX_RANGES + d.nr_filters++;
		} else if (sscanf(line, "R %llu %llu %llu %llu", &a, &b, &c, &e) == 4) {
			struct iof_range *r = &d.ranges[d.nr_ranges];
			r->start = a;
			r->end = b;
			r->ops = (unsigned)c;
			r->filter = (unsigned short)e;
			r->index = (unsigned short)d.nr_ranges;
			r->counter = d.nr_ranges++;
			qsort(d.ranges, d.nr_ranges, sizeof d.ranges[0], by_start);
		} else if (sscanf(line, "NOW %llu", &a) == 1) {
			now_ns = a;
		} else if (sscanf(line, "RAND %u", &x) == 1) {
			rand_u32 = x;
		} else if (!strncmp(line, "IO ", 3)) {
			struct iof_io io = {};
			unsigned long long sector;
			unsigned nr, ops;
			if (sscanf(line + 3, "%u %u %u %u %llu %u %u", &io.disk.major, &io.disk.minor, &io.dev.major,
				   &io.dev.minor, &sector, &nr, &ops) != 7) {
				fprintf(stderr, "bad IO line: %s", line);
				return 2;
			}
			io.sector = sector;
			io.nr_sectors = nr;
			io.ops = ops;
			printf("%d |", iof_match(&d, &io));
			/* counters by the order ranges were added (slot = insertion index) */
			for (unsigned i = 0; i < d.nr_ranges; i++)
				printf(" %llu/%llu", (unsigned long long)counters[i].matched,
				       (unsigned long long)counters[i].failed);
			printf("\n");
			fflush(stdout);
		} else if (line[0] != '\n' && line[0] != '#') {
			fprintf(stderr, "bad line: %s", line);
			return 2;
		}
	}
	return 0;
}
