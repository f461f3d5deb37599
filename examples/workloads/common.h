/*
 * common: what memstress and trainer share: flag parsing helpers, the log, signal handling, and the
 * clock and rate limiter that keep a workload's pace sane across a freeze or a migration.
 */
#ifndef WORKLOADS_COMMON_H
#define WORKLOADS_COMMON_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MAX_TICK_SEC 1.0
#define MAX_NAP_SEC 0.1
#define MIN_NAP_SEC 0.001
#define BURST_SEC 0.1
#define PAUSE_LOG_SEC 0.5

/* Seconds of run time that never jump: see tick(). */
struct vclock {
	double mono;
	double real;
};

struct bucket {
	double rate; /* tokens per second, 0 = unlimited */
	double tokens;
	double cap;
};

/* Defined by each program: the name that starts its usage errors. */
extern const char program_name[];

/* Set by on_stop() to the signal that asked the program to stop. */
extern volatile sig_atomic_t stop_signal;
/* Where log_line() writes; stderr until the log is open. */
extern int log_fd;

/* Exits with status 2: bad usage. */
_Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double parse_number(const char *flag, const char *text, double min, double max);
uint64_t parse_count(const char *flag, const char *text, uint64_t min, uint64_t max);

void write_all(int fd, const char *buf, size_t len);
/* One line per write() with a CLOCK_REALTIME timestamp: the log is read across hosts. */
void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A rootfs made of little more than the binary may have no /var/log. */
void make_parent_dirs(const char *path);
int open_log(const char *path);

void on_stop(int sig);
/* Without SA_RESTART, so a signal cuts a nap short. */
void install_handler(int sig, void (*handler)(int));
const char *signal_name(int sig);

double clock_sec(clockid_t id);
double clamp(double value, double min, double max);

void vclock_start(struct vclock *c);
/*
 * Returns the seconds since the last tick. After a restore on another host CLOCK_MONOTONIC jumps by
 * the difference of the two hosts' uptimes, and a freeze stops time for the process: steps are kept
 * within [0, MAX_TICK_SEC] so the rate limiters neither stall nor burst afterwards. Logs a pause line
 * when CLOCK_REALTIME advanced more than PAUSE_LOG_SEC: the downtime as the workload saw it.
 */
double tick(struct vclock *c);

void bucket_fill(struct bucket *b, double seconds);
/* How long to nap until `wanted` tokens are there, within [MIN_NAP_SEC, MAX_NAP_SEC]. */
double bucket_wait_sec(const struct bucket *b, double wanted);
void nap(double seconds);

#endif
