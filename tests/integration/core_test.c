/*
 * libdjob core against the live dev stack: submit -> completed through
 * Kafka and MongoDB, many jobs over two worker processes, a worker killed
 * inside a handler, fencing of a stale worker, the prototype's messages and
 * redelivery of finished jobs.
 *
 * Usage: core_test <test-name> <core_worker path>
 * Every test uses its own topic prefix, consumer group and collection, so
 * runs never see each other's data. Fails (never skips) without the stack.
 */
#include <djob/djob.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stack.h"

static const char *worker_path;
static char prefix[64], group[64], coll[64], runlog[256];

/* The shared stack-test helpers under the names used here. */
#define fail stack_fail
#define EXPECT STACK_CHECK
#define now_ms stack_now_ms

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A configuration on this test's names, from the environment. */
static djob_config_t *test_config(void)
{
	djob_config_t *conf;
	djob_error_t err;
	if (djob_config_new(&conf, &err) || djob_config_load_env(conf, &err) ||
	    djob_config_set(conf, "topic.prefix", prefix, &err) ||
	    djob_config_set(conf, "group.id", group, &err) ||
	    djob_config_set(conf, "mongo.collection", coll, &err) ||
	    djob_config_set(conf, "lease.ms", "2000", &err) ||
	    djob_config_set(conf, "kafka.session.timeout.ms", "6000", &err))
		fail("config: %s", err.message);
	return conf;
}

static djob_client_t *test_client(void)
{
	djob_config_t *conf = test_config();
	djob_client_t *c;
	djob_error_t err;
	if (djob_client_new(&c, conf, &err))
		fail("client: %s", err.message);
	djob_config_free(conf);
	return c;
}

static cJSON *get_job(djob_client_t *c, const char *id)
{
	char *json;
	djob_error_t err;
	if (djob_client_get(&json, c, id, &err))
		fail("get %s: %s", id, err.message);
	cJSON *j = cJSON_Parse(json);
	djob_free(json);
	EXPECT(j, "get %s returned invalid JSON", id);
	return j;
}

static const char *str_field(const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static int int_field(const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* Worker processes still running: killed if the test fails. */
static pid_t workers[8];
static int nworkers;

static void kill_workers(void)
{
	for (int i = 0; i < nworkers; i++)
		if (workers[i] > 0)
			kill(workers[i], SIGKILL);
}

static pid_t spawn_worker(long slow_first_ms)
{
	char slow[32];
	snprintf(slow, sizeof slow, "%ld", slow_first_ms);
	pid_t pid = fork();
	if (pid == 0) {
		/* DJOB_TEST_WORKER_WRAPPER (valgrind, say) wraps the worker too. */
		const char *wrap = getenv("DJOB_TEST_WORKER_WRAPPER");
		if (wrap && *wrap) {
			char cmd[2048];
			snprintf(cmd, sizeof cmd, "exec %s %s %s %s %s %s %s", wrap, worker_path, prefix,
			         group, coll, runlog, slow);
			execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		} else {
			execl(worker_path, worker_path, prefix, group, coll, runlog, slow, (char *)NULL);
		}
		_exit(127);
	}
	EXPECT(pid > 0, "fork failed");
	if (nworkers < 8)
		workers[nworkers++] = pid;
	return pid;
}

static void forget_worker(pid_t pid)
{
	for (int i = 0; i < nworkers; i++)
		if (workers[i] == pid)
			workers[i] = 0;
}

static void stop_worker(pid_t pid)
{
	int status;
	forget_worker(pid);
	kill(pid, SIGTERM);
	for (int i = 0; i < 300; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			       "worker %d exited with status %d", (int)pid, status);
			return;
		}
		sleep_ms(100);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	fail("worker %d did not stop within 30 s of SIGTERM", (int)pid);
}

/* Wait until the job is terminal; returns its document. */
static cJSON *wait_job(djob_client_t *c, const char *id, int timeout_ms)
{
	char *json;
	djob_error_t err;
	if (djob_client_wait(&json, c, id, timeout_ms, &err))
		fail("job %s: %s", id, err.message);
	cJSON *j = cJSON_Parse(json);
	djob_free(json);
	return j;
}

typedef struct {
	char id[40];
	long pid;
	int attempt;
	char kind;
} run_t;

/* Read the run log that the worker processes append to. */
static run_t *read_runs(size_t *n)
{
	FILE *f = fopen(runlog, "r");
	size_t cap = 1024;
	run_t *r = malloc(cap * sizeof *r);
	*n = 0;
	if (!f)
		return r;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		if (*n == cap)
			r = realloc(r, (cap *= 2) * sizeof *r);
		run_t *x = &r[*n];
		if (sscanf(line, "%c %39s %ld %d", &x->kind, x->id, &x->pid, &x->attempt) == 4)
			(*n)++;
	}
	fclose(f);
	return r;
}

static const char *sha256_hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/* ---- tests ---- */

static void test_submitted_compute_job_completes_with_sha256(void)
{
	djob_client_t *c = test_client();
	pid_t w = spawn_worker(0);
	char *id = NULL;
	djob_error_t err;
	const char *payload = "{\"input\":\"hello\"}";
	if (djob_client_submit(&id, c, "compute", payload, strlen(payload), NULL, &err))
		fail("submit: %s", err.message);
	EXPECT(strlen(id) == 36, "job id %s is not a uuid", id);
	cJSON *j = wait_job(c, id, 30000);
	EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "status is %s",
	       str_field(j, "status"));
	const cJSON *result = cJSON_GetObjectItemCaseSensitive(j, "result");
	EXPECT(strcmp(str_field(result, "message"), "Success") == 0, "result.message wrong");
	EXPECT(strcmp(str_field(result, "value"), sha256_hello) == 0, "hash is %s",
	       str_field(result, "value"));
	EXPECT(int_field(j, "attempts") == 1, "attempts is %d", int_field(j, "attempts"));
	EXPECT(strlen(str_field(j, "finishedAt")) == 24, "finishedAt is %s",
	       str_field(j, "finishedAt"));
	printf("ok job %s completed with %s\n", id, str_field(result, "value"));
	cJSON_Delete(j);
	djob_free(id);
	stop_worker(w);
	djob_client_free(c);
}

static void test_thousand_jobs_two_workers_each_completed_once(void)
{
	enum { N = 1000, BATCH = 100 };
	djob_client_t *c = test_client();
	pid_t w1 = spawn_worker(0), w2 = spawn_worker(0);
	char *ids[N];
	int n = 0;
	djob_error_t err;
	for (int b = 0; b < N / BATCH; b++) {
		cJSON *arr = cJSON_CreateArray();
		for (int i = 0; i < BATCH; i++) {
			char input[32];
			snprintf(input, sizeof input, "job-%d", b * BATCH + i);
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "type", "compute");
			cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "payload"), "input", input);
			cJSON_AddItemToArray(arr, o);
		}
		char *body = cJSON_PrintUnformatted(arr);
		char *resp;
		int created;
		if (djob_client_submit_json(&resp, &created, c, body, strlen(body), NULL, &err))
			fail("batch submit: %s", err.message);
		cJSON *r = cJSON_Parse(resp);
		const cJSON *id;
		cJSON_ArrayForEach(id, cJSON_GetObjectItemCaseSensitive(r, "jobIds"))
			ids[n++] = strdup(id->valuestring);
		cJSON_Delete(r);
		djob_free(resp);
		free(body);
		cJSON_Delete(arr);
	}
	EXPECT(n == N, "submitted %d ids", n);
	long long t0 = now_ms();
	int completed = 0;
	for (int i = 0; i < N; i++) {
		cJSON *j = wait_job(c, ids[i], 120000);
		if (strcmp(str_field(j, "status"), "completed") == 0)
			completed++;
		char input[32];
		snprintf(input, sizeof input, "job-%d", i);
		char hex[65];
		djob_sha256_hex(input, strlen(input), hex);
		EXPECT(strcmp(str_field(cJSON_GetObjectItemCaseSensitive(j, "result"), "value"), hex) ==
		               0,
		       "job %d has a wrong hash", i);
		cJSON_Delete(j);
	}
	printf("ok %d of %d jobs completed in %lld ms after the last submit\n", completed, N,
	       now_ms() - t0);
	EXPECT(completed == N, "only %d of %d completed", completed, N);
	stop_worker(w1);
	stop_worker(w2);
	size_t nr;
	run_t *runs = read_runs(&nr);
	int ends = 0, by_w1 = 0, by_w2 = 0;
	for (size_t i = 0; i < nr; i++) {
		if (runs[i].kind != 'E')
			continue;
		ends++;
		by_w1 += runs[i].pid == w1;
		by_w2 += runs[i].pid == w2;
		for (size_t k = i + 1; k < nr; k++)
			EXPECT(runs[k].kind != 'E' || strcmp(runs[k].id, runs[i].id) != 0,
			       "job %s ran to completion twice", runs[i].id);
	}
	printf("ok %d handler runs ended (%d in worker 1, %d in worker 2), none twice\n", ends, by_w1,
	       by_w2);
	EXPECT(ends == N, "%d handler runs ended for %d jobs", ends, N);
	free(runs);
	for (int i = 0; i < N; i++)
		free(ids[i]);
	djob_client_free(c);
}

static void test_worker_killed_inside_handler_leaves_job_to_the_other(void)
{
	djob_client_t *c = test_client();
	/* Both workers sleep 20 s in a job's first attempt. */
	pid_t w1 = spawn_worker(20000), w2 = spawn_worker(20000);
	sleep_ms(3000); /* both in the group */
	char *id = NULL;
	djob_error_t err;
	const char *payload = "{\"input\":\"hello\"}";
	if (djob_client_submit(&id, c, "compute", payload, strlen(payload), NULL, &err))
		fail("submit: %s", err.message);
	long victim = 0;
	for (long long t0 = now_ms(); !victim && now_ms() - t0 < 30000; sleep_ms(50)) {
		size_t nr;
		run_t *runs = read_runs(&nr);
		for (size_t i = 0; i < nr; i++)
			if (runs[i].kind == 'S' && strcmp(runs[i].id, id) == 0)
				victim = runs[i].pid;
		free(runs);
	}
	EXPECT(victim, "no worker started the job within 30 s");
	kill((pid_t)victim, SIGKILL);
	waitpid((pid_t)victim, NULL, 0);
	forget_worker((pid_t)victim);
	pid_t survivor = victim == w1 ? w2 : w1;
	printf("ok killed worker %ld inside the handler\n", victim);
	cJSON *j = wait_job(c, id, 60000);
	EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "status is %s",
	       str_field(j, "status"));
	EXPECT(int_field(j, "attempts") == 2, "attempts is %d", int_field(j, "attempts"));
	EXPECT(strcmp(str_field(cJSON_GetObjectItemCaseSensitive(j, "result"), "value"),
	              sha256_hello) == 0,
	       "wrong hash");
	/* The taken-over attempt is in the history, then the one that ran. */
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "history");
	EXPECT(cJSON_GetArraySize(h) == 2, "history has %d entries", cJSON_GetArraySize(h));
	EXPECT(strcmp(str_field(cJSON_GetArrayItem(h, 0), "status"), "lease expired") == 0 &&
	               int_field(cJSON_GetArrayItem(h, 0), "attempt") == 1,
	       "history[0] is %s of attempt %d", str_field(cJSON_GetArrayItem(h, 0), "status"),
	       int_field(cJSON_GetArrayItem(h, 0), "attempt"));
	EXPECT(strcmp(str_field(cJSON_GetArrayItem(h, 1), "status"), "completed") == 0,
	       "history[1] is %s", str_field(cJSON_GetArrayItem(h, 1), "status"));
	size_t nr;
	run_t *runs = read_runs(&nr);
	int ends = 0;
	for (size_t i = 0; i < nr; i++)
		if (runs[i].kind == 'E' && strcmp(runs[i].id, id) == 0) {
			ends++;
			EXPECT(runs[i].pid == survivor, "completed by %ld, not the survivor",
			       runs[i].pid);
		}
	EXPECT(ends == 1, "the job ran to completion %d times", ends);
	printf("ok job %s completed by the surviving worker on attempt 2\n", id);
	free(runs);
	cJSON_Delete(j);
	djob_free(id);
	stop_worker(survivor);
	djob_client_free(c);
}

static int patch(djob_client_t *c, const char *id, const char *body, djob_error_t *err)
{
	char *out = NULL;
	int rc = djob_client_update(&out, c, id, body, strlen(body), err);
	djob_free(out);
	return rc;
}

static void test_stale_worker_completion_is_refused(void)
{
	djob_client_t *c = test_client();
	char *id = NULL;
	djob_error_t err;
	const char *payload = "{\"input\":\"hello\"}";
	/* No worker runs: the test plays two workers through PATCH. */
	if (djob_client_submit(&id, c, "compute", payload, strlen(payload), NULL, &err))
		fail("submit: %s", err.message);
	EXPECT(patch(c, id, "{\"status\":\"processing\",\"workerId\":\"w1\",\"leaseMs\":1000}", &err) ==
	               0,
	       "w1 claim: %s", err.message);
	EXPECT(patch(c, id, "{\"status\":\"processing\",\"workerId\":\"w2\",\"leaseMs\":1000}", &err) ==
	               DJOB_ECONFLICT,
	       "w2 claimed a live lease");
	sleep_ms(1200);
	EXPECT(patch(c, id, "{\"status\":\"processing\",\"workerId\":\"w2\",\"leaseMs\":30000}",
	             &err) == 0,
	       "w2 claim after expiry: %s", err.message);
	int rc = patch(c, id,
	               "{\"status\":\"completed\",\"workerId\":\"w1\",\"attempts\":1,"
	               "\"result\":{\"value\":\"stale\"}}",
	               &err);
	EXPECT(rc == DJOB_ECONFLICT, "stale completion answered %d", rc);
	printf("ok stale completion refused: %s\n", err.message);
	EXPECT(patch(c, id,
	             "{\"status\":\"completed\",\"workerId\":\"w2\",\"attempts\":2,"
	             "\"result\":{\"value\":\"fresh\"}}",
	             &err) == 0,
	       "fresh completion: %s", err.message);
	cJSON *j = get_job(c, id);
	EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "status %s", str_field(j, "status"));
	EXPECT(strcmp(str_field(cJSON_GetObjectItemCaseSensitive(j, "result"), "value"), "fresh") == 0,
	       "the stale result was written");
	EXPECT(strcmp(str_field(j, "workerId"), "w2") == 0, "workerId %s", str_field(j, "workerId"));
	rc = patch(c, id, "{\"status\":\"processing\"}", &err);
	EXPECT(rc == DJOB_ECONFLICT, "completed -> processing answered %d", rc);
	printf("ok completed -> processing refused: %s\n", err.message);
	cJSON_Delete(j);
	djob_free(id);
	djob_client_free(c);
}

/* Insert and produce a job the way the Node.js prototype did: no attempts
 * or maxAttempts fields, and a message without a key. */
static void produce_prototype_job(const char *id, const char *input, bool insert)
{
	char topic[128];
	snprintf(topic, sizeof topic, "%scompute", prefix);
	if (insert) {
		mongoc_client_t *mc =
			mongoc_client_new(stack_mongo_uri());
		mongoc_collection_t *col = mongoc_client_get_collection(mc, "jobsdb", coll);
		int64_t now = (int64_t)time(NULL) * 1000;
		bson_t *doc = BCON_NEW("_id", BCON_UTF8(id), "type", BCON_UTF8("compute"), "status",
		                       BCON_UTF8("queued"), "payload", "{", "input", BCON_UTF8(input),
		                       "}", "createdAt", BCON_DATE_TIME(now), "updatedAt",
		                       BCON_DATE_TIME(now));
		bson_error_t e;
		EXPECT(mongoc_collection_insert_one(col, doc, NULL, NULL, &e), "insert: %s", e.message);
		bson_destroy(doc);
		mongoc_collection_destroy(col);
		mongoc_client_destroy(mc);
	}
	char value[512], errstr[256];
	snprintf(value, sizeof value,
	         "{\"_id\":\"%s\",\"type\":\"compute\",\"status\":\"queued\",\"payload\":{\"input\":"
	         "\"%s\"},\"createdAt\":\"2025-04-09T19:16:43.090Z\"}",
	         id, input);
	rd_kafka_conf_t *kc = rd_kafka_conf_new();
	rd_kafka_conf_set(kc, "bootstrap.servers", stack_kafka_brokers(),
	                  errstr, sizeof errstr);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof errstr);
	EXPECT(rk, "producer: %s", errstr);
	EXPECT(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(value, strlen(value)),
	                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == 0,
	       "produce failed");
	EXPECT(rd_kafka_flush(rk, 10000) == 0, "flush failed");
	rd_kafka_destroy(rk);
}

static void test_prototype_message_is_processed(void)
{
	djob_client_t *c = test_client();
	pid_t w = spawn_worker(0);
	char id[37];
	snprintf(id, sizeof id, "%08x-0000-4000-8000-%012llx", (unsigned)getpid(),
	         (unsigned long long)now_ms());
	produce_prototype_job(id, "hello", true);
	cJSON *j = wait_job(c, id, 30000);
	EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "status %s", str_field(j, "status"));
	EXPECT(strcmp(str_field(cJSON_GetObjectItemCaseSensitive(j, "result"), "value"),
	              sha256_hello) == 0,
	       "wrong hash");
	EXPECT(strcmp(str_field(j, "createdAt"), "") != 0, "createdAt lost");
	printf("ok prototype job %s completed with %s\n", id, sha256_hello);
	cJSON_Delete(j);

	/* Redelivery of a finished job: skipped, committed, not run again. */
	produce_prototype_job(id, "hello", false);
	sleep_ms(3000);
	stop_worker(w);
	size_t nr;
	run_t *runs = read_runs(&nr);
	int starts = 0;
	for (size_t i = 0; i < nr; i++)
		starts += runs[i].kind == 'S' && strcmp(runs[i].id, id) == 0;
	free(runs);
	EXPECT(starts == 1, "the redelivered completed job ran %d times", starts);
	j = get_job(c, id);
	EXPECT(int_field(j, "attempts") == 1, "attempts %d", int_field(j, "attempts"));
	printf("ok redelivered completed job was skipped\n");
	cJSON_Delete(j);
	djob_client_free(c);
}

/* ---- the scheduler ---- */

static djob_scheduler_t *start_scheduler(void)
{
	djob_config_t *conf = test_config();
	djob_error_t err;
	djob_scheduler_t *s;
	if (djob_config_set(conf, "scheduler.interval.ms", "200", &err) ||
	    djob_config_set(conf, "scheduler.grace.ms", "1000", &err) ||
	    djob_scheduler_new(&s, conf, &err) || djob_scheduler_start(s, &err))
		fail("scheduler: %s", err.message);
	djob_config_free(conf);
	return s;
}

static char *submit_body(djob_client_t *c, const char *json)
{
	char *resp, *id;
	int created;
	djob_error_t err;
	if (djob_client_submit_json(&resp, &created, c, json, strlen(json), NULL, &err))
		fail("submit %s: %s", json, err.message);
	cJSON *r = cJSON_Parse(resp);
	id = strdup(str_field(r, "jobId"));
	cJSON_Delete(r);
	djob_free(resp);
	return id;
}

static void test_job_failing_twice_then_succeeding_completes_on_attempt_3(void)
{
	djob_client_t *c = test_client();
	djob_scheduler_t *s = start_scheduler();
	pid_t w = spawn_worker(0);
	char *id = submit_body(
		c, "{\"type\":\"compute\",\"payload\":{\"input\":\"hello\",\"failTimes\":2},"
		   "\"maxAttempts\":5}");
	cJSON *j = wait_job(c, id, 60000);
	EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "status %s (%s)",
	       str_field(j, "status"), str_field(j, "error"));
	EXPECT(int_field(j, "attempts") == 3, "attempts %d", int_field(j, "attempts"));
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "history");
	EXPECT(cJSON_GetArraySize(h) == 3, "history has %d entries", cJSON_GetArraySize(h));
	EXPECT(strcmp(str_field(cJSON_GetArrayItem(h, 0), "error"), "planned failure 1") == 0,
	       "history[0].error %s", str_field(cJSON_GetArrayItem(h, 0), "error"));
	EXPECT(strcmp(str_field(cJSON_GetArrayItem(h, 2), "status"), "completed") == 0,
	       "history[2].status %s", str_field(cJSON_GetArrayItem(h, 2), "status"));
	printf("ok job %s completed with attempts = 3 after two planned failures\n", id);
	cJSON_Delete(j);
	free(id);
	stop_worker(w);
	djob_scheduler_free(s);
	djob_client_free(c);
}

static void test_always_failing_job_fails_after_max_attempts(void)
{
	djob_client_t *c = test_client();
	djob_scheduler_t *s = start_scheduler();
	pid_t w = spawn_worker(0);
	char *id = submit_body(
		c, "{\"type\":\"compute\",\"payload\":{\"input\":\"x\",\"failTimes\":100},"
		   "\"maxAttempts\":2}");
	cJSON *j = wait_job(c, id, 60000);
	EXPECT(strcmp(str_field(j, "status"), "failed") == 0, "status %s", str_field(j, "status"));
	EXPECT(int_field(j, "attempts") == 2, "attempts %d", int_field(j, "attempts"));
	EXPECT(strcmp(str_field(j, "error"), "planned failure 2") == 0, "error %s",
	       str_field(j, "error"));
	printf("ok job %s failed after maxAttempts = 2 with \"%s\"\n", id, str_field(j, "error"));
	/* An explicit retry requeues it with fresh attempts. */
	char *out;
	djob_error_t err;
	EXPECT(djob_client_retry(&out, c, id, &err) == 0, "retry: %s", err.message);
	cJSON *r = cJSON_Parse(out);
	EXPECT(strcmp(str_field(r, "status"), "queued") == 0, "retry left status %s",
	       str_field(r, "status"));
	cJSON_Delete(r);
	djob_free(out);
	cJSON_Delete(wait_job(c, id, 60000));
	cJSON_Delete(j);
	free(id);
	stop_worker(w);
	djob_scheduler_free(s);
	djob_client_free(c);
}

static void test_delayed_job_does_not_start_before_run_at(void)
{
	djob_client_t *c = test_client();
	djob_scheduler_t *s = start_scheduler();
	pid_t w = spawn_worker(0);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	time_t at = now.tv_sec + 3; /* 2 to 3 s ahead, whole seconds */
	struct tm tm;
	gmtime_r(&at, &tm);
	char run_at[32], body[256];
	strftime(run_at, sizeof run_at, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
	snprintf(body, sizeof body,
	         "{\"type\":\"compute\",\"payload\":{\"input\":\"hello\"},\"runAt\":\"%s\"}", run_at);
	char *id = submit_body(c, body);
	cJSON *j = get_job(c, id);
	EXPECT(strcmp(str_field(j, "status"), "scheduled") == 0, "status %s right after submit",
	       str_field(j, "status"));
	cJSON_Delete(j);
	j = wait_job(c, id, 60000);
	EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "status %s", str_field(j, "status"));
	EXPECT(strcmp(str_field(j, "startedAt"), run_at) >= 0, "started at %s, before runAt %s",
	       str_field(j, "startedAt"), run_at);
	printf("ok job %s with runAt %s started at %s\n", id, run_at, str_field(j, "startedAt"));
	cJSON_Delete(j);
	free(id);
	stop_worker(w);
	djob_scheduler_free(s);
	djob_client_free(c);
}

static void test_expired_lease_is_recovered_by_the_scheduler(void)
{
	djob_client_t *c = test_client();
	char *id = submit_body(c, "{\"type\":\"compute\",\"payload\":{\"input\":\"hello\"}}");
	djob_error_t err;
	/* A worker that claims and then vanishes. */
	EXPECT(patch(c, id, "{\"status\":\"processing\",\"workerId\":\"gone\",\"leaseMs\":1000}",
	             &err) == 0,
	       "claim: %s", err.message);
	djob_scheduler_t *s = start_scheduler();
	pid_t w = spawn_worker(0);
	cJSON *j = wait_job(c, id, 60000);
	EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "status %s", str_field(j, "status"));
	EXPECT(int_field(j, "attempts") == 2, "attempts %d", int_field(j, "attempts"));
	EXPECT(strcmp(str_field(j, "workerId"), "gone") != 0, "completed by the vanished worker");
	printf("ok job %s recovered from an expired lease and completed on attempt 2\n", id);
	cJSON_Delete(j);
	free(id);
	stop_worker(w);
	djob_scheduler_free(s);
	djob_client_free(c);
}

static void test_unpublished_job_is_published_by_the_scheduler(void)
{
	djob_client_t *c = test_client();
	/* What an API that died between insert and produce leaves behind: an
	 * outbox entry and the queued job, never published. */
	char id[37], outbox[96];
	snprintf(id, sizeof id, "%08x-0000-4000-8000-%012llx", (unsigned)getpid(),
	         (unsigned long long)now_ms());
	snprintf(outbox, sizeof outbox, "%s_outbox", coll);
	mongoc_client_t *mc =
		mongoc_client_new(stack_mongo_uri());
	mongoc_collection_t *col = mongoc_client_get_collection(mc, "jobsdb", coll);
	mongoc_collection_t *ob = mongoc_client_get_collection(mc, "jobsdb", outbox);
	int64_t old = (int64_t)time(NULL) * 1000 - 5000;
	bson_t *entry = BCON_NEW("_id", BCON_UTF8(id), "at", BCON_DATE_TIME(old));
	bson_t *doc = BCON_NEW("_id", BCON_UTF8(id), "type", BCON_UTF8("compute"), "status",
	                       BCON_UTF8("queued"), "payload", "{", "input", BCON_UTF8("hello"), "}",
	                       "attempts", BCON_INT32(0), "maxAttempts", BCON_INT32(3), "createdAt",
	                       BCON_DATE_TIME(old), "updatedAt", BCON_DATE_TIME(old));
	bson_error_t e;
	EXPECT(mongoc_collection_insert_one(ob, entry, NULL, NULL, &e), "outbox: %s", e.message);
	EXPECT(mongoc_collection_insert_one(col, doc, NULL, NULL, &e), "insert: %s", e.message);
	bson_destroy(entry);
	bson_destroy(doc);
	mongoc_collection_destroy(ob);
	mongoc_collection_destroy(col);
	mongoc_client_destroy(mc);
	djob_scheduler_t *s = start_scheduler();
	pid_t w = spawn_worker(0);
	cJSON *j = wait_job(c, id, 60000);
	EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "status %s", str_field(j, "status"));
	printf("ok unpublished job %s was published by the scheduler and completed\n", id);
	cJSON_Delete(j);
	stop_worker(w);
	djob_scheduler_free(s);
	djob_client_free(c);
}

static void test_two_schedulers_never_run_a_job_twice(void)
{
	enum { N = 40 };
	djob_client_t *c = test_client();
	djob_scheduler_t *s1 = start_scheduler(), *s2 = start_scheduler();
	pid_t w1 = spawn_worker(0), w2 = spawn_worker(0);
	char *ids[N];
	/* Every job fails once, so both schedulers race to republish it. */
	for (int i = 0; i < N; i++)
		ids[i] = submit_body(c, "{\"type\":\"compute\",\"payload\":{\"input\":\"hello\","
		                        "\"failTimes\":1}}");
	for (int i = 0; i < N; i++) {
		cJSON *j = wait_job(c, ids[i], 120000);
		EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "job %d status %s", i,
		       str_field(j, "status"));
		EXPECT(int_field(j, "attempts") == 2, "job %d attempts %d", i,
		       int_field(j, "attempts"));
		cJSON_Delete(j);
	}
	stop_worker(w1);
	stop_worker(w2);
	size_t nr;
	run_t *runs = read_runs(&nr);
	int starts = 0;
	for (size_t i = 0; i < nr; i++)
		if (runs[i].kind == 'S') {
			starts++;
			for (size_t k = i + 1; k < nr; k++)
				EXPECT(runs[k].kind != 'S' || strcmp(runs[k].id, runs[i].id) != 0 ||
				               runs[k].attempt != runs[i].attempt,
				       "job %s attempt %d ran twice", runs[i].id, runs[i].attempt);
		}
	EXPECT(starts == 2 * N, "%d handler runs for %d jobs of 2 attempts", starts, N);
	char *st1, *st2;
	djob_error_t err;
	djob_scheduler_stats(&st1, s1, &err);
	djob_scheduler_stats(&st2, s2, &err);
	printf("ok %d jobs, %d handler runs, none twice; scheduler 1 %s; scheduler 2 %s\n", N,
	       starts, st1, st2);
	djob_free(st1);
	djob_free(st2);
	free(runs);
	for (int i = 0; i < N; i++)
		free(ids[i]);
	djob_scheduler_free(s1);
	djob_scheduler_free(s2);
	djob_client_free(c);
}

static void test_paused_worker_resumes_its_partitions_after_a_rebalance(void)
{
	enum { N = 16 };
	djob_client_t *c = test_client();
	/* One handler thread and a queue of one: a few slow jobs fill them,
	 * so the worker pauses its partitions; a second worker then joins the
	 * group. */
	setenv("DJOB_CONCURRENCY", "1", 1);
	setenv("DJOB_WORKER_QUEUE", "1", 1);
	pid_t w1 = spawn_worker(0);
	sleep_ms(2000);
	char *ids[N];
	for (int i = 0; i < N; i++)
		ids[i] = submit_body(c, "{\"type\":\"compute\",\"payload\":{\"input\":\"hello\","
		                        "\"sleepMs\":400}}");
	sleep_ms(1500);
	pid_t w2 = spawn_worker(0);
	unsetenv("DJOB_CONCURRENCY");
	unsetenv("DJOB_WORKER_QUEUE");
	int completed = 0;
	for (int i = 0; i < N; i++) {
		cJSON *j = wait_job(c, ids[i], 90000);
		completed += strcmp(str_field(j, "status"), "completed") == 0;
		cJSON_Delete(j);
		free(ids[i]);
	}
	EXPECT(completed == N, "%d of %d completed", completed, N);
	printf("ok %d of %d slow jobs completed across a rebalance while the pool was full\n",
	       completed, N);
	stop_worker(w1);
	stop_worker(w2);
	djob_client_free(c);
}

/* ---- grouped submissions ---- */

enum { GROUP_THREADS = 16, GROUP_EACH = 20 };

typedef struct {
	djob_client_t *c;
	int index;
	char *ids[GROUP_EACH];
	int bad_rc[2];
	char bad_msg[2][256];
} submitter_t;

static void *submit_thread(void *arg)
{
	submitter_t *t = arg;
	djob_error_t err;
	for (int i = 0; i < GROUP_EACH; i++) {
		char payload[64];
		int n = snprintf(payload, sizeof payload, "{\"input\":\"g%d-%d\"}", t->index, i);
		if (djob_client_submit(&t->ids[i], t->c, "compute", payload, (size_t)n, NULL, &err))
			fail("submit %s: %s", payload, err.message);
		if (t->index == 0 && i == GROUP_EACH / 2) {
			/* Refused by validation: an empty key (DJOB_EINVAL), and a
			 * payload over 15 MiB as BSON (DJOB_ETOOBIG), which MongoDB
			 * would refuse inside a group (over its 16 MiB document
			 * limit) and is now refused before the group is written. */
			size_t big_len = 17u << 20;
			char *big = malloc(big_len + 16);
			EXPECT(big, "malloc");
			memcpy(big, "{\"input\":\"", 10);
			memset(big + 10, 'x', big_len - 12);
			memcpy(big + big_len - 2, "\"}", 3);
			const char *bad[2] = {"{\"\":1}", big};
			for (int b = 0; b < 2; b++) {
				char *id = NULL;
				t->bad_rc[b] = djob_client_submit(&id, t->c, "compute", bad[b],
				                                  strlen(bad[b]), NULL, &err);
				snprintf(t->bad_msg[b], sizeof t->bad_msg[b], "%s", err.message);
				djob_free(id);
			}
			free(big);
		}
	}
	return NULL;
}

static long count_docs(const char *suffix)
{
	char name[96];
	snprintf(name, sizeof name, "%s%s", coll, suffix);
	mongoc_client_t *m = mongoc_client_new(stack_mongo_uri());
	EXPECT(m, "bad MongoDB URI");
	mongoc_collection_t *col = mongoc_client_get_collection(m, "jobsdb", name);
	bson_t empty = BSON_INITIALIZER;
	bson_error_t e;
	int64_t n = mongoc_collection_count_documents(col, &empty, NULL, NULL, NULL, &e);
	EXPECT(n >= 0, "count %s: %s", name, e.message);
	mongoc_collection_destroy(col);
	mongoc_client_destroy(m);
	return (long)n;
}

/* 16 threads submit 20 jobs each through one client while its single
 * writer is busy: the jobs are written in groups, every submission gets
 * its own id, two payloads that cannot be stored fail alone (DJOB_EINVAL,
 * DJOB_ETOOBIG), and every job is stored once, published once and
 * completed. */
static void test_concurrent_submissions_are_written_in_groups_and_fail_alone(void)
{
	djob_config_t *conf = test_config();
	djob_error_t err;
	djob_client_t *c;
	if (djob_config_set(conf, "submit.writers", "1", &err) || djob_client_new(&c, conf, &err))
		fail("client: %s", err.message);
	djob_config_free(conf);
	static submitter_t t[GROUP_THREADS];
	pthread_t th[GROUP_THREADS];
	for (int i = 0; i < GROUP_THREADS; i++) {
		t[i].c = c;
		t[i].index = i;
		EXPECT(pthread_create(&th[i], NULL, submit_thread, &t[i]) == 0, "pthread_create");
	}
	for (int i = 0; i < GROUP_THREADS; i++)
		pthread_join(th[i], NULL);
	for (int b = 0; b < 2; b++)
		EXPECT(t[0].bad_rc[b] == (b == 0 ? DJOB_EINVAL : DJOB_ETOOBIG),
		       "bad payload %d: rc %d (%s), want %s", b, t[0].bad_rc[b], t[0].bad_msg[b],
		       b == 0 ? "DJOB_EINVAL" : "DJOB_ETOOBIG");
	printf("bad payloads refused: %s | %s\n", t[0].bad_msg[0], t[0].bad_msg[1]);
	char *stats;
	if (djob_client_stats(&stats, c, &err))
		fail("stats: %s", err.message);
	cJSON *st = cJSON_Parse(stats);
	int subs = int_field(st, "submissions"), writes = int_field(st, "submitWrites");
	printf("stats %s\n", stats);
	enum { GOOD = GROUP_THREADS * GROUP_EACH };
	/* Neither bad payload reached the servers: both were refused when
	 * their bodies were parsed. */
	EXPECT(subs == GOOD, "submissions %d, want %d", subs, GOOD);
	EXPECT(int_field(st, "submittedJobs") == GOOD, "submittedJobs wrong");
	/* Grouping happened: far fewer writes than submissions. */
	EXPECT(writes <= GOOD / 2, "%d writes for %d submissions: not grouped", writes, subs);
	cJSON_Delete(st);
	djob_free(stats);
	/* Every id is distinct and its job completes with its own hash. */
	pid_t w = spawn_worker(0);
	for (int i = 0; i < GROUP_THREADS; i++) {
		for (int k = 0; k < GROUP_EACH; k++) {
			EXPECT(t[i].ids[k] && strlen(t[i].ids[k]) == 36, "no id for %d/%d", i, k);
			for (int k2 = 0; k2 < k; k2++)
				EXPECT(strcmp(t[i].ids[k], t[i].ids[k2]) != 0, "id given twice");
		}
	}
	int completed = 0;
	for (int i = 0; i < GROUP_THREADS; i++) {
		for (int k = 0; k < GROUP_EACH; k++) {
			cJSON *j = wait_job(c, t[i].ids[k], 60000);
			char want[64];
			snprintf(want, sizeof want, "g%d-%d", i, k);
			const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "payload");
			EXPECT(strcmp(str_field(p, "input"), want) == 0, "job %s has input %s, want %s",
			       t[i].ids[k], str_field(p, "input"), want);
			EXPECT(strcmp(str_field(j, "status"), "completed") == 0, "job %s is %s",
			       t[i].ids[k], str_field(j, "status"));
			EXPECT(int_field(j, "attempts") == 1, "job %s attempts %d", t[i].ids[k],
			       int_field(j, "attempts"));
			completed++;
			cJSON_Delete(j);
			djob_free(t[i].ids[k]);
		}
	}
	/* Nothing more was stored than the good jobs, and every outbox entry
	 * is gone (all were published). */
	long jobs = count_docs(""), outbox = count_docs("_outbox");
	EXPECT(jobs == GOOD, "%ld jobs stored, want %d", jobs, GOOD);
	EXPECT(outbox == 0, "%ld outbox entries left", outbox);
	printf("ok %d jobs completed from %d submissions in %d writes\n", completed, subs, writes);
	stop_worker(w);
	djob_client_free(c);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s test-name core_worker-path\n", argv[0]);
		return 2;
	}
	stack_test_name = argv[1];
	atexit(kill_workers);
	worker_path = argv[2];
	setvbuf(stdout, NULL, _IONBF, 0);
	long long t = now_ms();
	snprintf(prefix, sizeof prefix, "t%d%lld.", (int)getpid(), t % 100000000);
	snprintf(group, sizeof group, "g%d%lld", (int)getpid(), t % 100000000);
	snprintf(coll, sizeof coll, "jobs_%d%lld", (int)getpid(), t % 100000000);
	snprintf(runlog, sizeof runlog, "/tmp/djob-runs-%d-%lld.log", (int)getpid(), t);
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{"submitted_compute_job_completes_with_sha256",
		 test_submitted_compute_job_completes_with_sha256},
		{"thousand_jobs_two_workers_each_completed_once",
		 test_thousand_jobs_two_workers_each_completed_once},
		{"worker_killed_inside_handler_leaves_job_to_the_other",
		 test_worker_killed_inside_handler_leaves_job_to_the_other},
		{"stale_worker_completion_is_refused", test_stale_worker_completion_is_refused},
		{"prototype_message_is_processed", test_prototype_message_is_processed},
		{"job_failing_twice_then_succeeding_completes_on_attempt_3",
		 test_job_failing_twice_then_succeeding_completes_on_attempt_3},
		{"always_failing_job_fails_after_max_attempts",
		 test_always_failing_job_fails_after_max_attempts},
		{"delayed_job_does_not_start_before_run_at", test_delayed_job_does_not_start_before_run_at},
		{"expired_lease_is_recovered_by_the_scheduler",
		 test_expired_lease_is_recovered_by_the_scheduler},
		{"unpublished_job_is_published_by_the_scheduler",
		 test_unpublished_job_is_published_by_the_scheduler},
		{"two_schedulers_never_run_a_job_twice", test_two_schedulers_never_run_a_job_twice},
		{"concurrent_submissions_are_written_in_groups_and_fail_alone",
		 test_concurrent_submissions_are_written_in_groups_and_fail_alone},
		{"paused_worker_resumes_its_partitions_after_a_rebalance",
		 test_paused_worker_resumes_its_partitions_after_a_rebalance},
	};
	for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
		if (strcmp(tests[i].name, stack_test_name) == 0) {
			tests[i].fn();
			unlink(runlog);
			printf("%s: 1 passed, 0 failed\n", stack_test_name);
			return 0;
		}
	}
	fprintf(stderr, "unknown test %s\n", stack_test_name);
	return 2;
}
