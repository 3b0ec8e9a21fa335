/* Building jobs from Kafka messages, djob's and the prototype's, and the
 * accessors and setters handlers use. */
#include "check.h"
#include "djob_private.h"

#define ID "3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f"
#define ID2 "a0b1c2d3-e4f5-4a6b-9c8d-0e1f2a3b4c5d"

static int from(djob_job_t **job, const char *key, const char *value, djob_error_t *err)
{
	return djob_job_from_message(job, key, key ? strlen(key) : 0, value, strlen(value), err);
}

static void test_djob_message_with_key_builds_the_job(void)
{
	djob_job_t *job = NULL;
	djob_error_t err;
	size_t len = 0;
	const char *value = "{\"_id\":\"" ID "\",\"type\":\"compute\",\"status\":\"queued\","
			    "\"payload\":{ \"input\" : \"hi\" },\"attempts\":2,\"maxAttempts\":5,"
			    "\"createdAt\":\"2025-04-09T19:16:43.090Z\"}";

	CHECK_INT(from(&job, ID, value, &err), 0);
	CHECK(job != NULL);
	if (job == NULL)
		return;
	CHECK_STR(djob_job_id(job), ID);
	CHECK_STR(djob_job_type(job), "compute");
	CHECK_STR(djob_job_payload(job, &len), "{\"input\":\"hi\"}");
	CHECK_INT(len, strlen("{\"input\":\"hi\"}"));
	CHECK_INT(djob_job_attempts(job), 2);
	CHECK_INT(djob_job_max_attempts(job), 5);
	CHECK(djob_job_result(job) == NULL);
	CHECK(djob_job_error(job) == NULL);
	CHECK(djob_job_worker_id(job) == NULL);
	CHECK(!djob_job_should_stop(job));
	djob_job_free(job);
}

static void test_key_wins_over_the_value_id(void)
{
	djob_job_t *job = NULL;
	djob_error_t err;

	CHECK_INT(from(&job, ID2, "{\"_id\":\"" ID "\",\"type\":\"compute\",\"payload\":{}}", &err),
	          0);
	CHECK_STR(djob_job_id(job), ID2);
	djob_job_free(job);
}

static void test_prototype_message_without_key_uses_value_ids(void)
{
	djob_job_t *job = NULL;
	djob_error_t err;

	/* The prototype produced the document with no key. */
	CHECK_INT(from(&job, NULL,
	               "{\"_id\":\"" ID "\",\"type\":\"compute\",\"status\":\"queued\","
	               "\"payload\":{\"input\":\"x\"},\"createdAt\":\"2025-04-09T19:16:43.090Z\"}",
	               &err),
	          0);
	CHECK_STR(djob_job_id(job), ID);
	CHECK_INT(djob_job_attempts(job), 0);
	djob_job_free(job);

	job = NULL;
	CHECK_INT(from(&job, "", "{\"jobId\":\"" ID "\",\"type\":\"file\",\"payload\":{}}", &err),
	          0);
	CHECK_STR(djob_job_id(job), ID);
	CHECK_STR(djob_job_type(job), "file");
	djob_job_free(job);

	job = NULL;
	CHECK_INT(from(&job, NULL, "{\"id\":\"" ID "\",\"type\":\"data\"}", &err), 0);
	CHECK_STR(djob_job_id(job), ID);
	/* a missing payload reads as {} */
	CHECK_STR(djob_job_payload(job, NULL), "{}");
	djob_job_free(job);
}

/* A worker's claim skips reading the job only for the message of a new job
 * (seq 0): djob's document as inserted. Anything else is read first. */
static void test_only_the_message_of_a_new_job_is_known_at_seq_0(void)
{
	static const struct {
		const char *value;
		long long seq;
	} cases[] = {
		{"{\"_id\":\"" ID "\",\"type\":\"compute\",\"status\":\"queued\",\"attempts\":0,"
		 "\"maxAttempts\":3,\"createdAt\":\"2025-04-09T19:16:43.090Z\","
		 "\"updatedAt\":\"2025-04-09T19:16:43.090Z\"}",
		 0},
		/* requeued (retry, due, expired lease): updated since */
		{"{\"_id\":\"" ID "\",\"type\":\"compute\",\"status\":\"queued\",\"attempts\":0,"
		 "\"maxAttempts\":3,\"createdAt\":\"2025-04-09T19:16:43.090Z\","
		 "\"updatedAt\":\"2025-04-09T19:17:00.000Z\"}",
		 -1},
		{"{\"_id\":\"" ID "\",\"type\":\"compute\",\"status\":\"queued\",\"attempts\":1,"
		 "\"maxAttempts\":3,\"createdAt\":\"2025-04-09T19:16:43.090Z\","
		 "\"updatedAt\":\"2025-04-09T19:16:43.090Z\"}",
		 -1},
		/* the prototype's: no attempts, maxAttempts or updatedAt */
		{"{\"_id\":\"" ID "\",\"type\":\"compute\",\"status\":\"queued\","
		 "\"createdAt\":\"2025-04-09T19:16:43.090Z\"}",
		 -1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		djob_job_t *job = NULL;
		djob_error_t err;
		CHECK_INT(from(&job, ID, cases[i].value, &err), 0);
		if (job)
			CHECK_INT(atomic_load(&job->seq), cases[i].seq);
		djob_job_free(job);
	}
}

static void test_bad_messages_are_rejected(void)
{
	static const struct {
		const char *key;
		const char *value;
	} bad[] = {
		{NULL, "not json"},
		{NULL, "{\"_id\":\"" ID "\",\"type\":\"compute\""},
		{NULL, "[]"},
		{NULL, "\"" ID "\""},
		{NULL, "{\"type\":\"compute\",\"payload\":{}}"},
		{NULL, "{\"_id\":\"nope\",\"type\":\"compute\",\"payload\":{}}"},
		{NULL, "{\"_id\":{\"$oid\":\"507f1f77bcf86cd799439011\"},\"type\":\"compute\"}"},
		{"not-a-uuid", "{\"_id\":\"" ID "\",\"type\":\"compute\",\"payload\":{}}"},
		{NULL, "{\"_id\":\"" ID "\",\"payload\":{}}"},
		{NULL, "{\"_id\":\"" ID "\",\"type\":\"bad type\",\"payload\":{}}"},
		{NULL, "{\"_id\":\"" ID "\",\"type\":7,\"payload\":{}}"},
		{NULL, "{\"_id\":\"" ID "\",\"type\":\"compute\",\"payload\":\"input\"}"},
		{NULL, "{\"_id\":\"" ID "\",\"type\":\"compute\",\"payload\":[1]}"},
		{NULL, "{\"_id\":\"" ID "\",\"type\":\"compute\",\"payload\":null}"},
	};
	djob_job_t *job;
	djob_error_t err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		job = (djob_job_t *)&err; /* must be reset to NULL */
		memset(&err, 0, sizeof(err));
		int rc = from(&job, bad[i].key, bad[i].value, &err);
		if (rc != DJOB_EINVAL)
			fprintf(stderr, "accepted: %s\n", bad[i].value);
		CHECK_INT(rc, DJOB_EINVAL);
		CHECK(job == NULL);
		CHECK_INT(err.code, DJOB_EINVAL);
		CHECK(err.message[0] >= 'A' && err.message[0] <= 'Z');
	}
	job = NULL;
	CHECK_INT(djob_job_from_message(&job, NULL, 0, "", 0, NULL), DJOB_EINVAL);
	/* a key with a NUL inside is not an id */
	CHECK_INT(djob_job_from_message(&job, ID "\0x", 38, "{\"type\":\"compute\"}", 18, NULL),
	          DJOB_EINVAL);
}

static void test_result_must_be_an_object_and_is_stored_compact(void)
{
	djob_job_t *job = NULL;
	djob_error_t err;
	const char *r = "{ \"a\" : [1, 2], \"b\" : \"x\" }";

	CHECK_INT(from(&job, ID, "{\"type\":\"compute\",\"payload\":{}}", &err), 0);
	CHECK_INT(djob_job_set_result(job, r, strlen(r), &err), 0);
	CHECK_STR(djob_job_result(job), "{\"a\":[1,2],\"b\":\"x\"}");
	CHECK_INT(djob_job_set_result(job, "[1]", 3, &err), DJOB_EINVAL);
	CHECK_INT(djob_job_set_result(job, "{\"a\":", 5, &err), DJOB_EINVAL);
	/* len bounds the text: the trailing garbage is not read */
	CHECK_INT(djob_job_set_result(job, "{}garbage", 2, &err), 0);
	CHECK_STR(djob_job_result(job), "{}");

	CHECK_INT(djob_job_set_error(job, "first"), 0);
	CHECK_INT(djob_job_set_error(job, "Disk full"), 0);
	CHECK_STR(djob_job_error(job), "Disk full");
	djob_job_free(job);
}

static void test_should_stop_follows_lease_and_stop_flag(void)
{
	djob_job_t *job = NULL;
	djob_error_t err;
	atomic_int stopping;

	atomic_init(&stopping, 0);
	CHECK_INT(from(&job, ID, "{\"type\":\"compute\",\"payload\":{}}", &err), 0);
	CHECK(!djob_job_should_stop(job));
	job->stopping = &stopping;
	CHECK(!djob_job_should_stop(job));
	atomic_store(&stopping, 1);
	CHECK(djob_job_should_stop(job));
	atomic_store(&stopping, 0);
	atomic_store(&job->lease_lost, 1);
	CHECK(djob_job_should_stop(job));
	djob_job_free(job);
	djob_job_free(NULL);
}

int main(void)
{
	RUN(test_djob_message_with_key_builds_the_job);
	RUN(test_key_wins_over_the_value_id);
	RUN(test_prototype_message_without_key_uses_value_ids);
	RUN(test_only_the_message_of_a_new_job_is_known_at_seq_0);
	RUN(test_bad_messages_are_rejected);
	RUN(test_result_must_be_an_object_and_is_stored_compact);
	RUN(test_should_stop_follows_lease_and_stop_flag);
	return check_report("unit_job_message");
}
