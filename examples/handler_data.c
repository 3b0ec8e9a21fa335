/*
 * The `data` job handler, written as a user of libdjob would write one.
 *
 * Payload {"values": [n1, n2, ...]}: 1 to 1,000,000 finite JSON numbers.
 * Result {"count", "sum", "mean", "min", "max", "stddev", "p50", "p90", "p99"}:
 *   - stddev is the population standard deviation, sqrt(sum((x - mean)^2) / n);
 *   - percentiles interpolate linearly between the closest ranks of the
 *     sorted values: for p in [0, 1], h = (n - 1) * p and
 *     P = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]),
 *     which is Hyndman and Fan's definition 7, the default of NumPy's
 *     percentile, R's quantile and Excel's PERCENTILE.INC.
 * The sum is compensated (Neumaier), and the standard deviation is computed
 * on values scaled by a power of two, so large magnitudes do not overflow.
 * Each number of the result is written with the fewest significant digits
 * (15 to 17) that read back as the same double.
 *
 * Anything other than a finite number fails the job naming its index:
 * strings (also "NaN" and "Infinity"), null, booleans, arrays, objects, and
 * numbers too large for a double (1e999). An empty or missing array fails;
 * so does a sum beyond the range of a double.
 *
 * Built twice (examples/meson.build): as the plugin djob-handler-data.so and
 * linked into handlers_worker.
 */
#include <djob/djob.h>

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The project builds with -fvisibility=hidden; the plugin entry point and
 * the functions other programs link must stay visible. */
#define DATA_EXPORT __attribute__((visibility("default")))

#ifndef DATA_MAX_VALUES
#define DATA_MAX_VALUES 1000000
#endif

typedef struct {
	size_t count;
	double sum, mean, min, max, stddev, p50, p90, p99;
} data_stats_t;

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Percentile p (0..1) of n >= 1 sorted values, by linear interpolation
 * between closest ranks (definition 7). */
static double percentile_sorted(const double *x, size_t n, double p)
{
	double h = (double)(n - 1) * p;
	size_t lo = (size_t)floor(h);
	double frac = h - (double)lo;

	if (lo + 1 >= n || frac == 0)
		return x[lo];
	double v = x[lo] + frac * (x[lo + 1] - x[lo]);
	/* The difference overflows only for neighbours of opposite sign near
	 * the limits of a double; weigh them separately then. */
	return isfinite(v) ? v : x[lo] * (1 - frac) + x[lo + 1] * frac;
}

/*
 * Statistics of n >= 1 finite values. Sorts `x` in place. Returns 0, or -1
 * when the sum is beyond the range of a double.
 */
static int data_stats(double *x, size_t n, data_stats_t *out)
{
	double sum = 0, comp = 0;
	int exp2;

	qsort(x, n, sizeof *x, compare_doubles);
	/* Neumaier's compensated sum, in sorted order. */
	for (size_t i = 0; i < n; i++) {
		double t = sum + x[i];
		if (fabs(sum) >= fabs(x[i]))
			comp += (sum - t) + x[i];
		else
			comp += (x[i] - t) + sum;
		sum = t;
	}
	sum += comp;
	if (!isfinite(sum))
		return -1;
	out->count = n;
	out->sum = sum;
	out->mean = sum / (double)n;
	out->min = x[0];
	out->max = x[n - 1];
	/* Scale by 2^-e (exact) so that the largest magnitude is below 1 and
	 * squares cannot overflow. */
	frexp(fmax(fabs(x[0]), fabs(x[n - 1])), &exp2);
	double mean_s = ldexp(out->mean, -exp2), ss = 0;
	for (size_t i = 0; i < n; i++) {
		double d = ldexp(x[i], -exp2) - mean_s;
		ss += d * d;
	}
	out->stddev = ldexp(sqrt(ss / (double)n), exp2);
	out->p50 = percentile_sorted(x, n, 0.50);
	out->p90 = percentile_sorted(x, n, 0.90);
	out->p99 = percentile_sorted(x, n, 0.99);
	return 0;
}

/*
 * The numbers of payload.values, checked. Returns 0 with *out (free it) and
 * *n set, or -1 with msg set.
 */
static int data_values_from_json(const cJSON *values, double **out, size_t *n, char *msg,
                                 size_t msgsize)
{
	const cJSON *v;
	size_t i = 0;

	*out = NULL;
	*n = 0;
	if (!cJSON_IsArray(values)) {
		snprintf(msg, msgsize, "payload.values must be an array of numbers");
		return -1;
	}
	int count = cJSON_GetArraySize(values);
	if (count == 0) {
		snprintf(msg, msgsize, "payload.values must not be empty");
		return -1;
	}
	if (count > DATA_MAX_VALUES) {
		snprintf(msg, msgsize, "payload.values has more than %d numbers", DATA_MAX_VALUES);
		return -1;
	}
	double *x = malloc((size_t)count * sizeof *x);
	if (x == NULL) {
		snprintf(msg, msgsize, "Out of memory");
		return -1;
	}
	cJSON_ArrayForEach(v, values)
	{
		if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
			snprintf(msg, msgsize, "payload.values[%zu] is not a finite number", i);
			free(x);
			return -1;
		}
		x[i++] = v->valuedouble;
	}
	*out = x;
	*n = i;
	return 0;
}

/* A finite double as a JSON number of the fewest significant digits (15
 * to 17) that reads back as the same double ("0.1", "1e+308", "-0"). Returns 0, or -1 for a NaN or
 * an infinity. */
static int data_number(char out[32], double v)
{
	if (!isfinite(v))
		return -1;
	for (int digits = 15; digits <= 17; digits++) {
		snprintf(out, 32, "%.*g", digits, v);
		if (strtod(out, NULL) == v)
			break;
	}
	return 0;
}

/* The handler. user_data is unused. */
DATA_EXPORT djob_job_status_t data_handler(djob_job_t *job, void *user_data)
{
	size_t len, n;
	const char *payload = djob_job_payload(job, &len);
	cJSON *doc = payload ? cJSON_ParseWithLength(payload, len) : NULL;
	char msg[DJOB_ERROR_MESSAGE_MAX];
	double *x;
	data_stats_t st;

	(void)user_data;
	int rc = data_values_from_json(cJSON_GetObjectItemCaseSensitive(doc, "values"), &x, &n, msg,
	                               sizeof msg);
	cJSON_Delete(doc);
	if (rc != 0) {
		djob_job_set_error(job, msg);
		return strcmp(msg, "Out of memory") == 0 ? DJOB_JOB_RETRY : DJOB_JOB_FAIL;
	}
	rc = data_stats(x, n, &st);
	free(x);
	if (rc != 0) {
		djob_job_set_error(job,
		                   "The sum of payload.values is beyond the range of a double");
		return DJOB_JOB_FAIL;
	}

	/* Written by hand: cJSON renders 15 significant digits, which loses
	 * the last bits of a double and turns 1.7976931348623157e308 into a
	 * number that reads back as infinity. */
	const double fields[] = {st.sum,    st.mean, st.min, st.max,
	                         st.stddev, st.p50,  st.p90, st.p99};
	static const char *const names[] = {"sum",    "mean", "min", "max",
	                                    "stddev", "p50",  "p90", "p99"};
	char text[512];
	size_t used = (size_t)snprintf(text, sizeof text, "{\"count\":%zu", st.count);
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		char num[32];
		if (data_number(num, fields[i]) != 0) {
			djob_job_set_error(job,
			                   "The standard deviation of payload.values is beyond "
			                   "the range of a double");
			return DJOB_JOB_FAIL;
		}
		used += (size_t)snprintf(text + used, sizeof text - used, ",\"%s\":%s", names[i],
		                         num);
	}
	snprintf(text + used, sizeof text - used, "}");
	djob_error_t err;
	if (djob_job_set_result(job, text, strlen(text), &err) != 0) {
		djob_job_set_error(job, err.message);
		return err.retriable ? DJOB_JOB_RETRY : DJOB_JOB_FAIL;
	}
	return DJOB_JOB_DONE;
}

/* Register `data` on the worker. */
DATA_EXPORT int data_handler_register(djob_worker_t *worker, djob_error_t *err)
{
	return djob_worker_register(worker, "data", data_handler, NULL, err);
}

#ifndef HANDLER_NO_PLUGIN_ENTRY
/* The plugin ABI and entry point djob_worker_load_plugin looks for. */
DJOB_PLUGIN_ABI;

DATA_EXPORT int djob_plugin_register(djob_worker_t *worker, djob_error_t *err)
{
	return data_handler_register(worker, err);
}
#endif
