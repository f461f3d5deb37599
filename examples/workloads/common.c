/* common: the helpers memstress and trainer share; see common.h. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

volatile sig_atomic_t stop_signal;
int log_fd = STDERR_FILENO;

void usage_error(const char *fmt, ...)
{
	va_list args;

	fprintf(stderr, "%s: ", program_name);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\nTry '%s --help'.\n", program_name);
	exit(2);
}

double parse_number(const char *flag, const char *text, double min, double max)
{
	char *end;
	double value;

	errno = 0;
	value = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !(value >= min && value <= max))
		usage_error("--%s wants a number from %g to %g, got '%s'", flag, min, max, text);
	return value;
}

uint64_t parse_count(const char *flag, const char *text, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long value;

	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < min || value > max)
		usage_error("--%s wants a whole number from %" PRIu64 " to %" PRIu64 ", got '%s'", flag, min, max,
			    text);
	return value;
}

void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to report a failing log */
		buf += n;
		len -= (size_t)n;
	}
}

void log_line(const char *fmt, ...)
{
	char line[512];
	struct timespec now;
	struct tm utc;
	va_list args;
	size_t len;
	int n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &utc);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &utc);
	len += (size_t)snprintf(line + len, sizeof(line) - len, ".%03ldZ ", now.tv_nsec / 1000000);
	va_start(args, fmt);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, args);
	va_end(args);
	len += (size_t)n;
	if (len > sizeof(line) - 1)
		len = sizeof(line) - 1;
	line[len++] = '\n';
	write_all(log_fd, line, len);
}

void make_parent_dirs(const char *path)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", path);
	for (char *slash = strchr(dir + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(dir, 0755);
		*slash = '/';
	}
}

int open_log(const char *path)
{
	if (strcmp(path, "-") == 0)
		return STDOUT_FILENO;
	make_parent_dirs(path);
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

void on_stop(int sig)
{
	stop_signal = sig;
}

void install_handler(int sig, void (*handler)(int))
{
	struct sigaction action;

	memset(&action, 0, sizeof(action));
	action.sa_handler = handler;
	sigemptyset(&action.sa_mask);
	sigaction(sig, &action, NULL);
}

const char *signal_name(int sig)
{
	return sig == SIGTERM ? "TERM" : sig == SIGINT ? "INT" : "none";
}

double clock_sec(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

double clamp(double value, double min, double max)
{
	return value < min ? min : value > max ? max : value;
}

void vclock_start(struct vclock *c)
{
	c->mono = clock_sec(CLOCK_MONOTONIC);
	c->real = clock_sec(CLOCK_REALTIME);
}

double tick(struct vclock *c)
{
	double mono = clock_sec(CLOCK_MONOTONIC), real = clock_sec(CLOCK_REALTIME);
	double step = clamp(mono - c->mono, 0, MAX_TICK_SEC);

	if (real - c->real > PAUSE_LOG_SEC)
		log_line("pause wall_ms=%.0f", (real - c->real) * 1000);
	c->mono = mono;
	c->real = real;
	return step;
}

void bucket_fill(struct bucket *b, double seconds)
{
	b->tokens = clamp(b->tokens + b->rate * seconds, 0, b->cap);
}

double bucket_wait_sec(const struct bucket *b, double wanted)
{
	return clamp((wanted - b->tokens) / b->rate, MIN_NAP_SEC, MAX_NAP_SEC);
}

void nap(double seconds)
{
	struct timespec t = { 0, (long)(seconds * 1e9) };

	nanosleep(&t, NULL);
}
