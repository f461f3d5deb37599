/*
 * trainer: a small model in training, the example workload to watch move between hosts.
 *
 * Generates a digits-like data set from --seed (5x7 glyphs of 0-9, shifted inside an 8x8 image, with
 * Gaussian pixel noise), then trains a 64-32-10 ReLU network on it with minibatch SGD and logs the
 * step, the mean loss and the accuracy of the last --log-every steps. All state lives in memory only,
 * so after a checkpoint and restore the log goes on from the same step with the loss still falling.
 * A run is deterministic for a given seed: a migrated run logs the same numbers as one that stayed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define SIDE 8
#define INPUTS (SIDE * SIDE)
#define HIDDEN 32
#define CLASSES 10
#define GLYPH_WIDTH 5
#define GLYPH_HEIGHT 7
#define SAMPLES 4096
#define BATCH 16
#define LEARNING_RATE 0.1f
#define PIXEL_NOISE 0.7f
#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)
#define DEFAULT_LOG "/var/log/trainer.log"

/* Rows of a 5x7 font, most significant of the five bits on the left. */
static const uint8_t glyphs[CLASSES][GLYPH_HEIGHT] = {
	{ 0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e }, { 0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e },
	{ 0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f }, { 0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e },
	{ 0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02 }, { 0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e },
	{ 0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e }, { 0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08 },
	{ 0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e }, { 0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c },
};

struct options {
	double steps_per_second;
	uint64_t log_every;
	uint64_t seed;
	uint64_t max_steps;
	const char *log_path;
};

struct rng {
	uint64_t state;
};

struct model {
	float w1[HIDDEN][INPUTS];
	float b1[HIDDEN];
	float w2[CLASSES][HIDDEN];
	float b2[CLASSES];
};

struct dataset {
	float image[SAMPLES][INPUTS];
	uint8_t label[SAMPLES];
};

/* Loss and accuracy since the last progress line. */
struct window {
	double loss_sum;
	uint64_t correct;
	uint64_t seen;
};

struct trainer {
	struct model model;
	struct model gradient;
	struct dataset data;
	struct rng rng;
	struct window window;
	uint64_t step;
};

const char program_name[] = "trainer";

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: trainer [OPTION]...\n"
		"Train a small neural network on a generated digits-like data set and log its progress.\n"
		"\n"
		"  --steps-per-second R   at most R training steps per second; 0 = as fast as possible (default 5)\n"
		"  --log-every K          log step, mean loss and accuracy every K steps (default 10)\n"
		"  --seed N               seed of the data set and of the model (default 1)\n"
		"  --max-steps N          stop after N steps; 0 = run until SIGTERM (default 0)\n"
		"  --log FILE             log file, '-' for stdout (default " DEFAULT_LOG ")\n"
		"  --help                 show this help\n"
		"\n"
		"Signals: SIGTERM or SIGINT stop after the current step with a final line.\n");
}

static struct options parse_options(int argc, char **argv)
{
	static const struct option flags[] = {
		{ "steps-per-second", required_argument, NULL, 'r' },
		{ "log-every", required_argument, NULL, 'k' },
		{ "seed", required_argument, NULL, 's' },
		{ "max-steps", required_argument, NULL, 'm' },
		{ "log", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct options o = { 5, 10, 1, 0, DEFAULT_LOG };
	int flag;

	while ((flag = getopt_long(argc, argv, "", flags, NULL)) != -1) {
		switch (flag) {
		case 'r': o.steps_per_second = parse_number("steps-per-second", optarg, 0, 1e6); break;
		case 'k': o.log_every = parse_count("log-every", optarg, 1, UINT64_MAX); break;
		case 's': o.seed = parse_count("seed", optarg, 0, UINT64_MAX); break;
		case 'm': o.max_steps = parse_count("max-steps", optarg, 0, UINT64_MAX); break;
		case 'l': o.log_path = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage_error("unknown option");
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	return o;
}

/* splitmix64 */
static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->state += GOLDEN);

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static float rng_uniform(struct rng *r)
{
	return (float)(rng_next(r) >> 40) * 0x1.0p-24f;
}

static uint32_t rng_below(struct rng *r, uint32_t n)
{
	return (uint32_t)(((rng_next(r) >> 32) * n) >> 32);
}

/* Box-Muller; 1 - uniform keeps logf away from 0. */
static float rng_gaussian(struct rng *r)
{
	float u = 1.0f - rng_uniform(r), v = rng_uniform(r);

	return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static bool glyph_pixel(int label, int row, int col)
{
	if (row < 0 || row >= GLYPH_HEIGHT || col < 0 || col >= GLYPH_WIDTH)
		return false;
	return glyphs[label][row] >> (GLYPH_WIDTH - 1 - col) & 1;
}

static void make_image(struct rng *r, int label, float *image)
{
	int dx = (int)rng_below(r, SIDE - GLYPH_WIDTH + 1), dy = (int)rng_below(r, SIDE - GLYPH_HEIGHT + 1);

	for (int row = 0; row < SIDE; row++)
		for (int col = 0; col < SIDE; col++)
			image[row * SIDE + col] = (float)glyph_pixel(label, row - dy, col - dx) +
						  PIXEL_NOISE * rng_gaussian(r);
}

static void make_dataset(struct dataset *d, uint64_t seed)
{
	struct rng r = { seed * GOLDEN ^ UINT64_C(0x64617461) };

	for (int i = 0; i < SAMPLES; i++) {
		d->label[i] = (uint8_t)(i % CLASSES);
		make_image(&r, d->label[i], d->image[i]);
	}
}

static void init_layer(struct rng *r, float *weights, int inputs, int outputs)
{
	float limit = sqrtf(6.0f / (float)(inputs + outputs));

	for (int i = 0; i < inputs * outputs; i++)
		weights[i] = (2.0f * rng_uniform(r) - 1.0f) * limit;
}

static void init_trainer(struct trainer *t, uint64_t seed)
{
	memset(t, 0, sizeof(*t));
	make_dataset(&t->data, seed);
	t->rng.state = seed * GOLDEN ^ UINT64_C(0x6d6f64656c);
	init_layer(&t->rng, &t->model.w1[0][0], INPUTS, HIDDEN);
	init_layer(&t->rng, &t->model.w2[0][0], HIDDEN, CLASSES);
}

static float dot(const float *a, const float *b, int n)
{
	float sum = 0;

	for (int i = 0; i < n; i++)
		sum += a[i] * b[i];
	return sum;
}

/* Fills the hidden activations and class probabilities; returns the cross-entropy loss. */
static float forward(const struct model *m, const float *image, int label, float *hidden, float *prob)
{
	float logit[CLASSES], top = -INFINITY, total = 0;

	for (int h = 0; h < HIDDEN; h++)
		hidden[h] = fmaxf(0, m->b1[h] + dot(m->w1[h], image, INPUTS));
	for (int c = 0; c < CLASSES; c++) {
		logit[c] = m->b2[c] + dot(m->w2[c], hidden, HIDDEN);
		top = fmaxf(top, logit[c]);
	}
	for (int c = 0; c < CLASSES; c++) {
		prob[c] = expf(logit[c] - top);
		total += prob[c];
	}
	for (int c = 0; c < CLASSES; c++)
		prob[c] /= total;
	return logf(total) + top - logit[label];
}

static void backward(const struct model *m, struct model *g, const float *image, int label, const float *hidden,
		     const float *prob)
{
	float hidden_grad[HIDDEN] = { 0 };

	for (int c = 0; c < CLASSES; c++) {
		float logit_grad = prob[c] - (c == label ? 1.0f : 0.0f);

		g->b2[c] += logit_grad;
		for (int h = 0; h < HIDDEN; h++) {
			g->w2[c][h] += logit_grad * hidden[h];
			hidden_grad[h] += logit_grad * m->w2[c][h];
		}
	}
	for (int h = 0; h < HIDDEN; h++) {
		if (hidden[h] <= 0)
			continue;
		g->b1[h] += hidden_grad[h];
		for (int i = 0; i < INPUTS; i++)
			g->w1[h][i] += hidden_grad[h] * image[i];
	}
}

static int predicted_class(const float *prob)
{
	int best = 0;

	for (int c = 1; c < CLASSES; c++)
		if (prob[c] > prob[best])
			best = c;
	return best;
}

/* struct model holds nothing but floats, so it is walked as one array. */
static void apply_gradient(struct model *m, struct model *g)
{
	float *weight = (float *)m, *grad = (float *)g;

	for (size_t i = 0; i < sizeof(*m) / sizeof(float); i++)
		weight[i] -= LEARNING_RATE / BATCH * grad[i];
	memset(g, 0, sizeof(*g));
}

static void train_step(struct trainer *t)
{
	float hidden[HIDDEN], prob[CLASSES];

	for (int b = 0; b < BATCH; b++) {
		uint32_t i = rng_below(&t->rng, SAMPLES);
		int label = t->data.label[i];

		t->window.loss_sum += forward(&t->model, t->data.image[i], label, hidden, prob);
		t->window.correct += predicted_class(prob) == label;
		t->window.seen++;
		backward(&t->model, &t->gradient, t->data.image[i], label, hidden, prob);
	}
	apply_gradient(&t->model, &t->gradient);
	t->step++;
}

static void log_progress(struct trainer *t)
{
	log_line("step=%" PRIu64 " loss=%.4f acc=%.2f", t->step, t->window.loss_sum / (double)t->window.seen,
		 (double)t->window.correct / (double)t->window.seen);
	memset(&t->window, 0, sizeof(t->window));
}

/* True when a step may run now; otherwise naps a little. */
static bool step_allowed(struct bucket *pace, struct vclock *clock)
{
	bucket_fill(pace, tick(clock));
	if (pace->rate == 0)
		return true;
	if (pace->tokens < 1) {
		nap(bucket_wait_sec(pace, 1));
		return false;
	}
	pace->tokens -= 1;
	return true;
}

static void train(struct trainer *t, const struct options *o)
{
	double burst = o->steps_per_second * BURST_SEC;
	struct bucket pace = { o->steps_per_second, 0, burst > 1 ? burst : 1 };
	struct vclock clock;

	vclock_start(&clock);
	while (!stop_signal && (o->max_steps == 0 || t->step < o->max_steps)) {
		if (!step_allowed(&pace, &clock))
			continue;
		train_step(t);
		if (t->step % o->log_every == 0)
			log_progress(t);
	}
}

static struct trainer trainer;

int main(int argc, char **argv)
{
	struct options o = parse_options(argc, argv);

	log_fd = open_log(o.log_path);
	if (log_fd < 0) {
		fprintf(stderr, "trainer: cannot open log %s: %s\n", o.log_path, strerror(errno));
		return 1;
	}
	install_handler(SIGTERM, on_stop);
	install_handler(SIGINT, on_stop);
	init_trainer(&trainer, o.seed);
	log_line("ready pid=%d seed=%" PRIu64 " samples=%d batch=%d parameters=%zu steps_per_second=%g log_every=%" PRIu64,
		 getpid(), o.seed, SAMPLES, BATCH, sizeof(struct model) / sizeof(float), o.steps_per_second,
		 o.log_every);
	train(&trainer, &o);
	if (stop_signal)
		log_line("stopped step=%" PRIu64 " signal=%s", trainer.step, signal_name(stop_signal));
	else
		log_line("finished step=%" PRIu64, trainer.step);
	return 0;
}
