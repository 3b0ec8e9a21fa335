/*
 * A handler plugin for the fault tests: compute that records every run, so
 * a test can count runs across worker processes (and across a SIGKILL).
 *
 * Each run appends "S <job id> <pid> <attempt>\n" to the file named by
 * DJOB_FAULT_RUNLOG when it starts and "E ..." when it returns (one
 * O_APPEND write each, so lines of several processes never mix). Payload
 * knobs: "sleepMs": N stays N ms in the handler; "failFirst": N asks for a
 * retry on attempts 1..N.
 */
#include <djob/djob.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define FAULT_EXPORT __attribute__((visibility("default")))

static int log_fd = -1;

static void record(char kind, djob_job_t *job)
{
	char line[128];
	int n = snprintf(line, sizeof line, "%c %s %ld %d\n", kind, djob_job_id(job),
	                 (long)getpid(), djob_job_attempts(job));
	if (write(log_fd, line, (size_t)n) != n)
		abort(); /* a lost record would make the counts lie */
}

static djob_job_status_t fault_compute(djob_job_t *job, void *user_data)
{
	(void)user_data;
	record('S', job);
	size_t len;
	const char *text = djob_job_payload(job, &len);
	cJSON *p = cJSON_ParseWithLength(text, len);
	const cJSON *sleep_ms = cJSON_GetObjectItemCaseSensitive(p, "sleepMs");
	const cJSON *fail_first = cJSON_GetObjectItemCaseSensitive(p, "failFirst");
	long ms = cJSON_IsNumber(sleep_ms) ? (long)sleep_ms->valuedouble : 0;
	int fail = cJSON_IsNumber(fail_first) ? fail_first->valueint : 0;
	cJSON_Delete(p);
	if (ms > 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	djob_job_status_t st;
	if (djob_job_attempts(job) <= fail) {
		djob_job_set_error(job, "Failing on purpose");
		st = DJOB_JOB_RETRY;
	} else {
		st = djob_handler_compute(job, NULL);
	}
	record('E', job);
	return st;
}

DJOB_PLUGIN_ABI;

FAULT_EXPORT int djob_plugin_register(djob_worker_t *worker, djob_error_t *err);

FAULT_EXPORT int djob_plugin_register(djob_worker_t *worker, djob_error_t *err)
{
	const char *path = getenv("DJOB_FAULT_RUNLOG");
	if (!path || !*path) {
		snprintf(err->message, sizeof err->message, "DJOB_FAULT_RUNLOG is not set");
		err->code = DJOB_EINVAL;
		err->retriable = 0;
		return DJOB_EINVAL;
	}
	log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		snprintf(err->message, sizeof err->message, "Cannot open %s", path);
		err->code = DJOB_EINVAL;
		err->retriable = 0;
		return DJOB_EINVAL;
	}
	return djob_worker_register(worker, "compute", fault_compute, NULL, err);
}
