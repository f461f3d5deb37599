/*
 * memstress: a memory workload for live-migration benchmarks.
 *
 * Keeps --size-mib of anonymous memory resident as 4 KiB pages. Each page carries a header (magic, index,
 * generation, checksum) and content derived from (index, generation). The program sweeps all pages in
 * passes: it verifies every page and rewrites, with the next generation, as many pages as the
 * --dirty-mib-per-sec budget allows. A page that a migration lost, zeroed or brought back stale is logged
 * as a CORRUPTION line. SIGUSR1 flips one byte on purpose, to show that the check can fail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define PAGE_BYTES 4096
#define PAGE_WORDS (PAGE_BYTES / 8)
#define HEADER_WORDS 4
#define PAYLOAD_WORDS (PAGE_WORDS - HEADER_WORDS)
#define PAGES_PER_MIB (1024 * 1024 / PAGE_BYTES)
#define PAGE_MAGIC UINT64_C(0x4645525259504147) /* "FERRYPAG" */
#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)
#define HASH_MULTIPLIER UINT64_C(0xff51afd7ed558ccd)
#define CHUNK_PAGES 64
#define DEFAULT_LOG "/var/log/memstress.log"

enum { H_MAGIC, H_INDEX, H_GENERATION, H_CHECKSUM };

struct options {
	uint64_t size_mib;
	double dirty_mib_per_sec;
	double pass_sec;
	double report_every_sec;
	const char *log_path;
};

struct arena {
	uint64_t *pages;
	/* Expected generation of each page: a stale but self-consistent page (a missed dirty page) fails too. */
	uint32_t *generations;
	size_t count;
};

struct sweep {
	struct arena arena;
	struct vclock clock;
	double elapsed; /* run time: the sum of the ticks */
	struct bucket visits;
	struct bucket dirty;
	size_t cursor;
	uint64_t passes, verified, dirtied, errors;
	double pass_started, pass_busy_sec, last_pass_sec, last_busy_sec;
	double last_report, next_report, report_every_sec;
	uint64_t dirtied_at_last_report;
};

const char program_name[] = "memstress";
static volatile sig_atomic_t corrupt_requested;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: memstress [OPTION]...\n"
		"Keep memory resident, rewrite it at a given rate and verify all of it on every pass.\n"
		"\n"
		"  --size-mib N             resident size in MiB, filled before the ready line (default 64)\n"
		"  --dirty-mib-per-sec R    rewrite R MiB of pages per second, spread over the sweep;\n"
		"                           0 = only verify (default 0)\n"
		"  --pass-sec S             spread one pass over S seconds, or go faster when the dirty rate\n"
		"                           needs it; 0 = sweep as fast as the CPU allows (default 5)\n"
		"  --report-every-sec S     seconds between report lines (default 1)\n"
		"  --log FILE               log file, '-' for stdout (default " DEFAULT_LOG ")\n"
		"  --help                   show this help\n"
		"\n"
		"Signals: SIGTERM or SIGINT stop after a final report; SIGUSR1 flips one byte of the\n"
		"memory, which the next verification must log as a CORRUPTION line.\n"
		"Exit status: 0 when no integrity error was seen, 1 otherwise or on a runtime error, 2 on bad usage.\n");
}

static struct options parse_options(int argc, char **argv)
{
	static const struct option flags[] = {
		{ "size-mib", required_argument, NULL, 's' },
		{ "dirty-mib-per-sec", required_argument, NULL, 'd' },
		{ "pass-sec", required_argument, NULL, 'p' },
		{ "report-every-sec", required_argument, NULL, 'r' },
		{ "log", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct options o = { 64, 0, 5, 1, DEFAULT_LOG };
	int flag;

	while ((flag = getopt_long(argc, argv, "", flags, NULL)) != -1) {
		switch (flag) {
		case 's': o.size_mib = parse_count("size-mib", optarg, 1, UINT64_C(1) << 20); break;
		case 'd': o.dirty_mib_per_sec = parse_number("dirty-mib-per-sec", optarg, 0, 1e6); break;
		case 'p': o.pass_sec = parse_number("pass-sec", optarg, 0, 86400); break;
		case 'r': o.report_every_sec = parse_number("report-every-sec", optarg, 0.01, 86400); break;
		case 'l': o.log_path = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage_error("unknown option");
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	return o;
}

static void on_corrupt(int sig)
{
	(void)sig;
	corrupt_requested = 1;
}

/* murmur3's finaliser: a bijection, so distinct inputs stay distinct. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return x;
}

static uint64_t page_seed(uint64_t index, uint64_t generation)
{
	return mix64(index * GOLDEN ^ mix64(generation));
}

/*
 * Four independent lanes in registers keep the multiplier busy: a 1 GiB sweep under QEMU TCG is slow.
 * Every step is a bijection of its lane, so any single changed word changes the hash.
 */
static uint64_t payload_hash(const uint64_t *payload, uint64_t seed)
{
	uint64_t a = seed, b = seed + GOLDEN, c = seed + 2 * GOLDEN, d = seed + 3 * GOLDEN;

	for (size_t i = 0; i < PAYLOAD_WORDS; i += 4) {
		a = (a ^ payload[i]) * HASH_MULTIPLIER;
		b = (b ^ payload[i + 1]) * HASH_MULTIPLIER;
		c = (c ^ payload[i + 2]) * HASH_MULTIPLIER;
		d = (d ^ payload[i + 3]) * HASH_MULTIPLIER;
	}
	return mix64(mix64(mix64(mix64(seed ^ a) ^ b) ^ c) ^ d);
}

static void fill_page(uint64_t *page, uint64_t index, uint64_t generation)
{
	uint64_t seed = page_seed(index, generation);
	uint64_t *payload = page + HEADER_WORDS;

	for (size_t i = 0; i < PAYLOAD_WORDS; i++) {
		uint64_t z = seed + (i + 1) * GOLDEN;

		payload[i] = z ^ (z >> 31);
	}
	page[H_MAGIC] = PAGE_MAGIC;
	page[H_INDEX] = index;
	page[H_GENERATION] = generation;
	page[H_CHECKSUM] = payload_hash(payload, seed);
}

static uint64_t *page_at(const struct arena *a, size_t index)
{
	return a->pages + index * PAGE_WORDS;
}

static void write_page(struct arena *a, size_t index, uint32_t generation)
{
	fill_page(page_at(a, index), index, generation);
	a->generations[index] = generation;
}

static bool page_intact(const struct arena *a, size_t index)
{
	const uint64_t *page = page_at(a, index);
	uint64_t generation = a->generations[index];

	return page[H_MAGIC] == PAGE_MAGIC && page[H_INDEX] == index && page[H_GENERATION] == generation &&
	       page[H_CHECKSUM] == payload_hash(page + HEADER_WORDS, page_seed(index, generation));
}

/* The slow path: compare with the page as it should be and name the first differing word. */
static void report_corruption(const struct arena *a, size_t index)
{
	uint64_t expected[PAGE_WORDS];
	const uint64_t *got = page_at(a, index);
	size_t first = PAGE_WORDS, differing = 0;

	fill_page(expected, index, a->generations[index]);
	for (size_t i = 0; i < PAGE_WORDS; i++) {
		if (expected[i] == got[i])
			continue;
		if (differing++ == 0)
			first = i;
	}
	log_line("CORRUPTION page=%zu expected=0x%016" PRIx64 " got=0x%016" PRIx64
		 " offset=%zu differing_words=%zu generation=%" PRIu32,
		 index, expected[first], got[first], first * sizeof(uint64_t), differing, a->generations[index]);
}

static bool arena_alloc(struct arena *a, uint64_t size_mib)
{
	size_t bytes = (size_t)size_mib * 1024 * 1024;

	a->count = bytes / PAGE_BYTES;
	a->pages = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a->pages == MAP_FAILED)
		return false;
	/* Dirty tracking works per 4 KiB page only without huge pages: one write would resend 2 MiB. */
	madvise(a->pages, bytes, MADV_NOHUGEPAGE);
	a->generations = calloc(a->count, sizeof(*a->generations));
	return a->generations != NULL;
}

static bool arena_fill(struct arena *a)
{
	for (size_t i = 0; i < a->count; i++) {
		if (stop_signal)
			return false;
		write_page(a, i, 1);
	}
	return true;
}

static void sweep_init(struct sweep *s, const struct options *o)
{
	double dirty_rate = o->dirty_mib_per_sec * PAGES_PER_MIB;
	double pass_rate = o->pass_sec > 0 ? (double)s->arena.count / o->pass_sec : 0;

	s->dirty = (struct bucket){ dirty_rate, 0, dirty_rate * BURST_SEC > 1 ? dirty_rate * BURST_SEC : 1 };
	/* The sweep must meet a page for each rewrite, so a high dirty rate speeds up the passes. */
	if (pass_rate > 0 && pass_rate < dirty_rate)
		pass_rate = dirty_rate;
	s->visits = (struct bucket){ pass_rate, 0,
				     pass_rate * BURST_SEC > CHUNK_PAGES ? pass_rate * BURST_SEC : CHUNK_PAGES };
	s->report_every_sec = o->report_every_sec;
	vclock_start(&s->clock);
	s->next_report = o->report_every_sec;
}

static void visit_page(struct sweep *s, size_t index)
{
	struct arena *a = &s->arena;

	s->verified++;
	if (!page_intact(a, index)) {
		report_corruption(a, index);
		s->errors++;
		/* Repaired, so one corruption is counted once. */
		write_page(a, index, a->generations[index] + 1);
	} else if (s->dirty.tokens >= 1) {
		s->dirty.tokens -= 1;
		write_page(a, index, a->generations[index] + 1);
		s->dirtied++;
	}
}

static void finish_pass(struct sweep *s)
{
	s->passes++;
	s->last_pass_sec = s->elapsed - s->pass_started;
	s->last_busy_sec = s->pass_busy_sec;
	s->pass_started = s->elapsed;
	s->pass_busy_sec = 0;
	s->cursor = 0;
}

static void sweep_pages(struct sweep *s, size_t pages)
{
	double started = clock_sec(CLOCK_MONOTONIC);

	for (size_t i = 0; i < pages; i++)
		visit_page(s, s->cursor + i);
	s->cursor += pages;
	s->pass_busy_sec += clamp(clock_sec(CLOCK_MONOTONIC) - started, 0, MAX_TICK_SEC);
	if (s->cursor == s->arena.count)
		finish_pass(s);
}

/* Pages the sweep may visit now; 0 means nap first. */
static size_t pages_allowed(struct sweep *s)
{
	size_t pages = s->arena.count - s->cursor;

	if (pages > CHUNK_PAGES)
		pages = CHUNK_PAGES;
	if (s->visits.rate == 0)
		return pages;
	if (s->visits.tokens < (double)pages)
		return 0;
	s->visits.tokens -= (double)pages;
	return pages;
}

static void corrupt_one_byte(struct sweep *s)
{
	size_t offset = PAGE_BYTES / 2;

	((unsigned char *)page_at(&s->arena, s->cursor))[offset] ^= 0xff;
	corrupt_requested = 0;
	log_line("debug flipped byte page=%zu offset=%zu", s->cursor, offset);
}

static void report(struct sweep *s)
{
	double interval = s->elapsed - s->last_report;
	uint64_t dirtied = s->dirtied - s->dirtied_at_last_report;

	log_line("report passes=%" PRIu64 " pages_verified=%" PRIu64 " pages_dirtied=%" PRIu64 " errors=%" PRIu64
		 " pass_ms=%.0f busy_ms=%.0f dirty_mib_s=%.2f",
		 s->passes, s->verified, s->dirtied, s->errors, s->last_pass_sec * 1000, s->last_busy_sec * 1000,
		 interval > 0 ? (double)dirtied / PAGES_PER_MIB / interval : 0.0);
	s->last_report = s->elapsed;
	s->next_report = s->elapsed + s->report_every_sec;
	s->dirtied_at_last_report = s->dirtied;
}

/* Advances the run time by the step tick() allows and returns the step. */
static double sweep_tick(struct sweep *s)
{
	double step = tick(&s->clock);

	s->elapsed += step;
	return step;
}

static void sweep_run(struct sweep *s)
{
	while (!stop_signal) {
		double step = sweep_tick(s);
		size_t pages;

		bucket_fill(&s->visits, step);
		bucket_fill(&s->dirty, step);
		if (corrupt_requested)
			corrupt_one_byte(s);
		if (s->elapsed >= s->next_report)
			report(s);
		pages = pages_allowed(s);
		if (pages == 0)
			nap(bucket_wait_sec(&s->visits, CHUNK_PAGES));
		else
			sweep_pages(s, pages);
	}
}

int main(int argc, char **argv)
{
	struct options o = parse_options(argc, argv);
	struct sweep s;
	double fill_started;

	log_fd = open_log(o.log_path);
	if (log_fd < 0) {
		fprintf(stderr, "memstress: cannot open log %s: %s\n", o.log_path, strerror(errno));
		return 1;
	}
	install_handler(SIGTERM, on_stop);
	install_handler(SIGINT, on_stop);
	install_handler(SIGUSR1, on_corrupt);
	log_line("start pid=%d size_mib=%" PRIu64 " dirty_mib_per_sec=%g pass_sec=%g report_every_sec=%g", getpid(),
		 o.size_mib, o.dirty_mib_per_sec, o.pass_sec, o.report_every_sec);

	memset(&s, 0, sizeof(s));
	if (!arena_alloc(&s.arena, o.size_mib)) {
		log_line("error: cannot allocate %" PRIu64 " MiB: %s", o.size_mib, strerror(errno));
		return 1;
	}
	fill_started = clock_sec(CLOCK_MONOTONIC);
	if (!arena_fill(&s.arena)) {
		log_line("stopped signal=%s before ready", signal_name(stop_signal));
		return 0;
	}
	log_line("ready pages=%zu fill_ms=%.0f", s.arena.count, (clock_sec(CLOCK_MONOTONIC) - fill_started) * 1000);

	sweep_init(&s, &o);
	sweep_run(&s);
	sweep_tick(&s);
	report(&s);
	log_line("stopped signal=%s errors=%" PRIu64, signal_name(stop_signal), s.errors);
	return s.errors == 0 ? 0 : 1;
}
