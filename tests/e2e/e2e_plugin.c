/*
 * A handler plugin for the e2e tests: compute, with two knobs in the
 * payload so tests can watch a job run and retry:
 *   "sleepMs": N    stay in the handler N ms (a job is seen "processing")
 *   "failFirst": N  ask for a retry on the first N attempts
 * and three to watch results: "echo": true returns {"echo": <payload>} (the
 * payload's text as the handler got it), "resultJson": "<text>" returns that
 * text, "resultBadUtf8": true returns a string that is not UTF-8.
 */
#include <djob/djob.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

#define E2E_EXPORT __attribute__((visibility("default")))

static djob_job_status_t e2e_compute(djob_job_t *job, void *user_data)
{
	(void)user_data;
	size_t len;
	const char *text = djob_job_payload(job, &len);
	cJSON *p = cJSON_ParseWithLength(text, len);
	const cJSON *sleep_ms = cJSON_GetObjectItemCaseSensitive(p, "sleepMs");
	const cJSON *fail_first = cJSON_GetObjectItemCaseSensitive(p, "failFirst");
	long ms = cJSON_IsNumber(sleep_ms) ? (long)sleep_ms->valuedouble : 0;
	int fail = cJSON_IsNumber(fail_first) ? fail_first->valueint : 0;
	const cJSON *result_json = cJSON_GetObjectItemCaseSensitive(p, "resultJson");
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "echo"))) {
		char *r = malloc(len + 16);
		memcpy(r, "{\"echo\":", 8);
		memcpy(r + 8, text, len);
		r[8 + len] = '}';
		djob_job_set_result(job, r, len + 9, NULL);
		free(r);
		cJSON_Delete(p);
		return DJOB_JOB_DONE;
	}
	if (cJSON_IsString(result_json)) {
		const char *r = result_json->valuestring;
		djob_job_set_result(job, r, strlen(r), NULL);
		cJSON_Delete(p);
		return DJOB_JOB_DONE;
	}
	const cJSON *stop_file = cJSON_GetObjectItemCaseSensitive(p, "stopFile");
	if (cJSON_IsString(stop_file)) {
		/* Report progress every 20 ms until told to stop (30 s at most),
		 * then write the wall-clock ms of that moment to stopFile. */
		long step = 0;
		for (; step < 1500 && !djob_job_should_stop(job); step++) {
			char msg[32];
			snprintf(msg, sizeof msg, "step %ld", step);
			djob_job_set_progress(job, (double)step, msg);
			struct timespec ts = {0, 20 * 1000000L};
			nanosleep(&ts, NULL);
		}
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		FILE *f = fopen(stop_file->valuestring, "w");
		if (f) {
			fprintf(f, "%lld %ld\n",
			        (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, step);
			fclose(f);
		}
		cJSON_Delete(p);
		djob_job_set_result(job, "{\"notWritten\":true}", 19, NULL);
		return DJOB_JOB_DONE;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "resultBadUtf8"))) {
		static const char bad[] = "{\"s\":\"\xff\xfe\"}";
		djob_job_set_result(job, bad, sizeof bad - 1, NULL);
		cJSON_Delete(p);
		return DJOB_JOB_DONE;
	}
	cJSON_Delete(p);
	for (; ms > 0 && !djob_job_should_stop(job); ms -= 50) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (djob_job_attempts(job) <= fail) {
		djob_job_set_error(job, "Failing on purpose");
		return DJOB_JOB_RETRY;
	}
	return djob_handler_compute(job, NULL);
}

DJOB_PLUGIN_ABI;

E2E_EXPORT int djob_plugin_register(djob_worker_t *worker, djob_error_t *err);

E2E_EXPORT int djob_plugin_register(djob_worker_t *worker, djob_error_t *err)
{
	return djob_worker_register(worker, "compute", e2e_compute, NULL, err);
}
