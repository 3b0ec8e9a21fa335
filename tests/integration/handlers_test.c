/*
 * The example handlers through the whole system: jobs of type file,
 * blockchain and data submitted with djob_client_submit, run by a worker
 * that loads the three plugins with djob_worker_load_plugin (the plugin
 * form of examples/handler_*.c), awaited with djob_client_wait.
 *
 * Usage: handlers_test <test-name> <file.so> <blockchain.so> <data.so>
 * Each run uses its own topic prefix, consumer group and collection. Fails
 * (never skips) without the dev stack.
 */
#include <djob/djob.h>

#include <cjson/cJSON.h>

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stack.h"

static char prefix[64], group[64], coll[64], root[PATH_MAX];

/* The shared stack-test helpers under the names used here. */
#define fail stack_fail
#define EXPECT STACK_CHECK
#define now_ms stack_now_ms

static djob_config_t *test_config(void)
{
	djob_config_t *conf;
	djob_error_t err;
	if (djob_config_new(&conf, &err) || djob_config_load_env(conf, &err) ||
	    djob_config_set(conf, "topic.prefix", prefix, &err) ||
	    djob_config_set(conf, "group.id", group, &err) ||
	    djob_config_set(conf, "mongo.collection", coll, &err) ||
	    djob_config_set(conf, "types", "compute,file,blockchain,data", &err) ||
	    djob_config_set(conf, "kafka.session.timeout.ms", "6000", &err))
		fail("config: %s", err.message);
	return conf;
}

/* A temp root with one known file, named by DJOB_FILE_ROOT for the plugin. */
static void make_root(void)
{
	char tmpl[] = "/tmp/djob-handlers-XXXXXX", path[PATH_MAX + 32];
	EXPECT(mkdtemp(tmpl), "mkdtemp failed");
	snprintf(root, sizeof root, "%s", tmpl);
	snprintf(path, sizeof path, "%s/hello.txt", root);
	FILE *f = fopen(path, "w");
	EXPECT(f, "cannot write %s", path);
	fputs("hello\nworld\nno newline at end", f);
	fclose(f);
	setenv("DJOB_FILE_ROOT", root, 1);
}

static void remove_root(void)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/hello.txt", root);
	unlink(path);
	rmdir(root);
}

/* A running worker with the three plugins loaded. */
static djob_worker_t *start_worker(char **plugins)
{
	djob_config_t *conf = test_config();
	djob_worker_t *w;
	djob_error_t err;
	if (djob_worker_new(&w, conf, &err))
		fail("worker: %s", err.message);
	for (int i = 0; i < 3; i++)
		if (djob_worker_load_plugin(w, plugins[i], &err))
			fail("load %s: %s", plugins[i], err.message);
	if (djob_worker_start(w, &err))
		fail("worker start: %s", err.message);
	djob_config_free(conf);
	return w;
}

static char *submit(djob_client_t *c, const char *type, const char *payload)
{
	char *id;
	djob_error_t err;
	if (djob_client_submit(&id, c, type, payload, strlen(payload), NULL, &err))
		fail("submit %s %s: %s", type, payload, err.message);
	return id;
}

static cJSON *wait_job(djob_client_t *c, const char *id)
{
	char *json;
	djob_error_t err;
	if (djob_client_wait(&json, c, id, 60000, &err))
		fail("job %s: %s", id, err.message);
	cJSON *j = cJSON_Parse(json);
	djob_free(json);
	EXPECT(j, "job %s: invalid JSON", id);
	return j;
}

static const char *str_field(const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static double num_field(const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Wait for the job; it must have `status`. Returns the document. */
static cJSON *expect_status(djob_client_t *c, const char *id, const char *type, const char *status)
{
	cJSON *j = wait_job(c, id);
	EXPECT(strcmp(str_field(j, "status"), status) == 0, "%s job %s is %s (error: %s)", type, id,
	       str_field(j, "status"), str_field(j, "error"));
	return j;
}

static void test_plugins_complete_file_blockchain_and_data_jobs(char **plugins)
{
	djob_config_t *conf = test_config();
	djob_client_t *c;
	djob_error_t err;
	if (djob_client_new(&c, conf, &err))
		fail("client: %s", err.message);
	djob_config_free(conf);
	djob_worker_t *w = start_worker(plugins);
	long long t0 = now_ms();

	char *file_id = submit(c, "file", "{\"path\":\"hello.txt\"}");
	char *chain_id = submit(
		c, "blockchain",
		"{\"data\":\"hello\",\"difficulty\":8,\"transactions\":[\"a\",\"b\",\"c\"]}");
	char *data_id = submit(c, "data", "{\"values\":[15,20,35,40,50]}");

	/* Expected values: see tests/unit/test_handler_*.c (Python hashlib). */
	cJSON *j = expect_status(c, file_id, "file", "completed");
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
	EXPECT(strcmp(str_field(r, "sha256"),
	              "6d125be2c7b7d912ce6250e071724074606f8b0842c023a4075fd01f96b0f8f3") == 0,
	       "file sha256 %s", str_field(r, "sha256"));
	EXPECT(num_field(r, "size") == 29 && num_field(r, "lines") == 3, "file size %g lines %g",
	       num_field(r, "size"), num_field(r, "lines"));
	printf("ok file job %s completed: sha256 %.16s..., 29 bytes, 3 lines\n", file_id,
	       str_field(r, "sha256"));
	cJSON_Delete(j);

	j = expect_status(c, chain_id, "blockchain", "completed");
	r = cJSON_GetObjectItemCaseSensitive(j, "result");
	EXPECT(num_field(r, "nonce") == 227 && num_field(r, "tries") == 228, "nonce %g tries %g",
	       num_field(r, "nonce"), num_field(r, "tries"));
	EXPECT(strcmp(str_field(r, "hash"),
	              "001b92541ed0a22b0cb89018b561d895503206c0082c0ecf2d0b7e5182191eed") == 0,
	       "hash %s", str_field(r, "hash"));
	char check[65];
	djob_sha256_hex("hello227", 8, check);
	EXPECT(strcmp(check, str_field(r, "hash")) == 0, "hash is not sha256(data + nonce)");
	EXPECT(strcmp(str_field(r, "merkleRoot"),
	              "d31a37ef6ac14a2db1470c4316beb5592e6afd4465022339adafda76a18ffabe") == 0,
	       "merkleRoot %s", str_field(r, "merkleRoot"));
	printf("ok blockchain job %s completed: nonce 227, merkle root %.16s...\n", chain_id,
	       str_field(r, "merkleRoot"));
	cJSON_Delete(j);

	j = expect_status(c, data_id, "data", "completed");
	r = cJSON_GetObjectItemCaseSensitive(j, "result");
	EXPECT(num_field(r, "count") == 5 && num_field(r, "sum") == 160 &&
	               num_field(r, "mean") == 32 && num_field(r, "min") == 15 &&
	               num_field(r, "max") == 50 && num_field(r, "p50") == 35 &&
	               num_field(r, "p90") == 46 && fabs(num_field(r, "p99") - 49.6) < 1e-9 &&
	               fabs(num_field(r, "stddev") - sqrt(166)) < 1e-9,
	       "data result wrong");
	printf("ok data job %s completed: mean 32, stddev %.6f, p90 46\n", data_id,
	       num_field(r, "stddev"));
	cJSON_Delete(j);
	printf("ok three jobs completed in %lld ms\n", now_ms() - t0);

	djob_free(file_id);
	djob_free(chain_id);
	djob_free(data_id);
	if (djob_worker_stop(w, &err))
		fail("worker stop: %s", err.message);
	djob_worker_free(w);
	djob_client_free(c);
}

static void test_plugins_fail_bad_payloads_with_clear_errors(char **plugins)
{
	static const struct {
		const char *type, *payload, *error;
	} cases[] = {
		{"file", "{\"path\":\"../etc/passwd\"}",
	         "payload.path leaves the file root: ../etc/passwd"},
		{"file", "{\"path\":\"missing.txt\"}", "File not found: missing.txt"},
		{"blockchain", "{\"data\":\"x\",\"difficulty\":99}",
	         "payload.difficulty must be an integer from 0 to 24"},
		{"data", "{\"values\":[1,\"NaN\"]}", "payload.values[1] is not a finite number"},
	};
	enum {
		N = sizeof cases / sizeof cases[0]
	};
	djob_config_t *conf = test_config();
	djob_client_t *c;
	djob_error_t err;
	char *ids[N];
	if (djob_client_new(&c, conf, &err))
		fail("client: %s", err.message);
	djob_config_free(conf);
	djob_worker_t *w = start_worker(plugins);

	for (int i = 0; i < N; i++)
		ids[i] = submit(c, cases[i].type, cases[i].payload);
	for (int i = 0; i < N; i++) {
		cJSON *j = expect_status(c, ids[i], cases[i].type, "failed");
		EXPECT(strcmp(str_field(j, "error"), cases[i].error) == 0, "%s job error is \"%s\"",
		       cases[i].type, str_field(j, "error"));
		/* A handler's FAIL is final: no retries. */
		EXPECT(num_field(j, "attempts") == 1, "%s job ran %g times", cases[i].type,
		       num_field(j, "attempts"));
		printf("ok %s job %s failed: %s\n", cases[i].type, ids[i], cases[i].error);
		cJSON_Delete(j);
		djob_free(ids[i]);
	}
	if (djob_worker_stop(w, &err))
		fail("worker stop: %s", err.message);
	djob_worker_free(w);
	djob_client_free(c);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s test-name file.so blockchain.so data.so\n", argv[0]);
		return 2;
	}
	stack_test_name = argv[1];
	setvbuf(stdout, NULL, _IONBF, 0);
	long long t = now_ms();
	snprintf(prefix, sizeof prefix, "h%d%lld.", (int)getpid(), t % 100000000);
	snprintf(group, sizeof group, "hg%d%lld", (int)getpid(), t % 100000000);
	snprintf(coll, sizeof coll, "jobs_h%d%lld", (int)getpid(), t % 100000000);
	static const struct {
		const char *name;
		void (*fn)(char **plugins);
	} tests[] = {
		{"plugins_complete_file_blockchain_and_data_jobs",
	         test_plugins_complete_file_blockchain_and_data_jobs},
		{"plugins_fail_bad_payloads_with_clear_errors",
	         test_plugins_fail_bad_payloads_with_clear_errors},
	};
	for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
		if (strcmp(tests[i].name, stack_test_name) == 0) {
			make_root();
			tests[i].fn(argv + 2);
			remove_root();
			printf("%s: 1 passed, 0 failed\n", stack_test_name);
			return 0;
		}
	}
	fprintf(stderr, "unknown test %s\n", stack_test_name);
	return 2;
}
