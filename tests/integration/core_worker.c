/*
 * A worker process for the core integration tests. It handles `compute`
 * with a handler that records every run, so tests can count runs across
 * processes and kill a process inside a handler.
 *
 * Usage: core_worker <prefix> <group> <collection> <run-log> [slow-first-ms]
 *   Each handler run appends "<job id> <pid> <attempt>\n" to run-log when it
 *   starts ("S ...") and when it returns ("E ..."). With slow-first-ms, the
 *   first attempt of a job sleeps that long inside the handler. A payload
 *   with "failTimes": n makes attempts 1..n fail with RETRY and the error
 *   "planned failure <attempt>"; "sleepMs": n makes the handler sleep n ms.
 *   The process stops cleanly on SIGTERM.
 */
#include <djob/djob.h>

#include <cjson/cJSON.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static djob_worker_t *worker;
static int log_fd = -1;
static long slow_first_ms;

static void on_term(int sig)
{
	(void)sig;
	if (worker)
		djob_worker_request_stop(worker);
}

static void record(char kind, djob_job_t *job)
{
	char line[128];
	int n = snprintf(line, sizeof line, "%c %s %ld %d\n", kind, djob_job_id(job), (long)getpid(),
	                 djob_job_attempts(job));
	/* One write with O_APPEND: lines from both processes never mix. */
	if (write(log_fd, line, (size_t)n) != n)
		abort();
}

static djob_job_status_t counting_compute(djob_job_t *job, void *user_data)
{
	(void)user_data;
	record('S', job);
	if (slow_first_ms > 0 && djob_job_attempts(job) == 1) {
		struct timespec ts = {slow_first_ms / 1000, (slow_first_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	size_t len;
	const char *payload = djob_job_payload(job, &len);
	cJSON *p = cJSON_ParseWithLength(payload, len);
	const cJSON *fail = cJSON_GetObjectItemCaseSensitive(p, "failTimes");
	const cJSON *sleep = cJSON_GetObjectItemCaseSensitive(p, "sleepMs");
	int fail_times = cJSON_IsNumber(fail) ? fail->valueint : 0;
	if (cJSON_IsNumber(sleep) && sleep->valueint > 0) {
		struct timespec ts = {sleep->valueint / 1000, (sleep->valueint % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	cJSON_Delete(p);
	djob_job_status_t st;
	if (djob_job_attempts(job) <= fail_times) {
		char msg[64];
		snprintf(msg, sizeof msg, "planned failure %d", djob_job_attempts(job));
		djob_job_set_error(job, msg);
		st = DJOB_JOB_RETRY;
	} else {
		st = djob_handler_compute(job, NULL);
	}
	record('E', job);
	return st;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s prefix group collection run-log [slow-first-ms]\n", argv[0]);
		return 2;
	}
	slow_first_ms = argc > 5 ? atol(argv[5]) : 0;
	log_fd = open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (log_fd < 0) {
		perror(argv[4]);
		return 2;
	}
	djob_error_t err;
	djob_config_t *conf;
	if (djob_config_new(&conf, &err) || djob_config_load_env(conf, &err) ||
	    djob_config_set(conf, "topic.prefix", argv[1], &err) ||
	    djob_config_set(conf, "group.id", argv[2], &err) ||
	    djob_config_set(conf, "mongo.collection", argv[3], &err) ||
	    djob_config_set(conf, "lease.ms", "2000", &err) ||
	    djob_config_set(conf, "kafka.session.timeout.ms", "6000", &err) ||
	    djob_worker_new(&worker, conf, &err) ||
	    djob_worker_register(worker, "compute", counting_compute, NULL, &err)) {
		fprintf(stderr, "core_worker: %s\n", err.message);
		return 1;
	}
	djob_config_free(conf);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int rc = djob_worker_run(worker, &err);
	if (rc != 0)
		fprintf(stderr, "core_worker: %s\n", err.message);
	djob_worker_free(worker);
	close(log_fd);
	return rc == 0 ? 0 : 1;
}
