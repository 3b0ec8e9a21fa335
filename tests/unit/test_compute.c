/* sha256 (FIPS 180-2 vectors) and the compute handler. */
#include "check.h"
#include "djob_private.h"

#include <stdlib.h>

static void test_sha256_matches_fips_180_2_vectors(void)
{
	char hex[65];
	char *million;

	djob_sha256_hex("abc", 3, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	djob_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
	CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

	million = malloc(1000000);
	memset(million, 'a', 1000000);
	djob_sha256_hex(million, 1000000, hex);
	CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);
}

static void test_sha256_of_empty_input(void)
{
	char hex[65];

	djob_sha256_hex("", 0, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* A job as the worker would build it, with the given payload. */
static djob_job_t *job_with_payload(const char *payload)
{
	djob_job_t *job = calloc(1, sizeof(*job));

	job->id = strdup("3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f");
	job->type = strdup("compute");
	job->payload = strdup(payload);
	job->payload_len = strlen(payload);
	job->attempts = 1;
	job->max_attempts = 3;
	return job;
}

static void test_compute_result_is_success_and_sha256_of_input(void)
{
	djob_job_t *job = job_with_payload("{\"input\":\"abc\",\"other\":1}");

	CHECK_INT(djob_handler_compute(job, NULL), DJOB_JOB_DONE);
	CHECK_STR(djob_job_result(job),
	          "{\"message\":\"Success\",\"value\":"
	          "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}");
	CHECK(djob_job_error(job) == NULL);
	djob_job_free(job);

	/* JSON escapes are decoded before hashing: "\u00e9" is the two bytes of é */
	job = job_with_payload("{\"input\":\"caf\\u00e9\"}");
	char expected[65];
	djob_sha256_hex("caf\xc3\xa9", 5, expected);
	CHECK_INT(djob_handler_compute(job, NULL), DJOB_JOB_DONE);
	CHECK(djob_job_result(job) != NULL && strstr(djob_job_result(job), expected) != NULL);
	djob_job_free(job);

	job = job_with_payload("{\"input\":\"\"}");
	CHECK_INT(djob_handler_compute(job, NULL), DJOB_JOB_DONE);
	CHECK(strstr(djob_job_result(job),
	             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") != NULL);
	djob_job_free(job);
}

static void test_compute_fails_without_a_string_input(void)
{
	static const char *bad[] = {"{}",
	                            "{\"input\":42}",
	                            "{\"input\":null}",
	                            "{\"input\":[\"abc\"]}",
	                            "{\"input\":{\"a\":1}}",
	                            "{\"Input\":\"abc\"}"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		djob_job_t *job = job_with_payload(bad[i]);
		CHECK_INT(djob_handler_compute(job, NULL), DJOB_JOB_FAIL);
		CHECK_STR(djob_job_error(job), "payload.input must be a string");
		CHECK(djob_job_result(job) == NULL);
		djob_job_free(job);
	}
}

int main(void)
{
	RUN(test_sha256_matches_fips_180_2_vectors);
	RUN(test_sha256_of_empty_input);
	RUN(test_compute_result_is_success_and_sha256_of_input);
	RUN(test_compute_fails_without_a_string_input);
	return check_report("unit_compute");
}
