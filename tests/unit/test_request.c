/* request.c: POST /jobs and PATCH bodies parsed into what is written. */
#include "check.h"
#include "request.h"

#include <stdlib.h>

static djob_config_t *conf;

static int submission(const char *body, size_t max_message, const char *key,
                      djob_submission_t **out, djob_error_t *err)
{
	return djob_submission_parse(out, conf, max_message, body, strlen(body), key, err);
}

static void test_a_single_job_keeps_its_payload_exactly(void)
{
	djob_submission_t *s = NULL;
	djob_error_t err;
	CHECK_INT(submission("{\"type\":\"compute\",\"payload\":{\"n\":9007199254740993,"
	                     "\"d\":0.1},\"maxAttempts\":5}",
	                     0, NULL, &s, &err),
	          0);
	if (!s)
		return;
	CHECK_INT(s->n, 1);
	CHECK(!s->batch);
	CHECK_STR(s->jobs[0].type, "compute");
	CHECK_INT(s->jobs[0].max_attempts, 5);
	CHECK_INT(strlen(s->jobs[0].id), 36);
	bson_iter_t it;
	CHECK(bson_iter_init_find(&it, s->jobs[0].payload, "n") && BSON_ITER_HOLDS_INT64(&it) &&
	      bson_iter_int64(&it) == 9007199254740993LL);
	/* The Kafka message carries it exactly too. */
	CHECK(strstr(s->jobs[0].message, "\"payload\":{\"n\":9007199254740993,\"d\":0.1}") != NULL);
	CHECK_INT(s->jobs[0].message_len, strlen(s->jobs[0].message));
	djob_submission_free(s);
}

static void test_a_batch_gives_each_job_its_own_payload(void)
{
	djob_submission_t *s = NULL;
	djob_error_t err;
	CHECK_INT(submission("[{\"type\":\"compute\",\"payload\":{\"i\":1}},"
	                     "{\"type\":\"data\",\"payload\":{\"i\":2},\"idempotencyKey\":\"k\"}]",
	                     0, NULL, &s, &err),
	          0);
	if (!s)
		return;
	CHECK_INT(s->n, 2);
	CHECK(s->batch);
	for (size_t i = 0; i < 2; i++) {
		bson_iter_t it;
		CHECK(bson_iter_init_find(&it, s->jobs[i].payload, "i") &&
		      bson_iter_as_int64(&it) == (int64_t)i + 1);
	}
	CHECK(strcmp(s->jobs[0].id, s->jobs[1].id) != 0);
	CHECK(s->jobs[0].idempotency_key == NULL);
	CHECK_STR(s->jobs[1].idempotency_key, "k");
	djob_submission_free(s);
}

static void test_bad_submissions_are_refused_with_the_right_code(void)
{
	static const struct {
		const char *body;
		int rc;
	} cases[] = {
		{"[]", DJOB_EINVAL},
		{"{\"type\":\"compute\"}", DJOB_EINVAL},
		{"{\"type\":\"compute\",\"payload\":[1]}", DJOB_EINVAL},
		{"{\"type\":\"nope\",\"payload\":{}}", DJOB_EINVAL},
		{"{\"type\":\"compute\",\"payload\":{},\"maxAttempts\":1001}", DJOB_EINVAL},
		{"{\"type\":\"compute\",\"payload\":{},\"maxAttempts\":2.5}", DJOB_EINVAL},
		{"{\"type\":\"compute\",\"payload\":{},\"runAt\":\"soon\"}", DJOB_EINVAL},
		{"{\"type\":\"compute\",\"payload\":{},\"idempotencyKey\":\"\"}", DJOB_EINVAL},
		{"{\"type\":\"compute\",\"payload\":{\"a.b\":1}}", DJOB_EINVAL},
		{"{\"type\":\"compute\",\"payload\":{\"n\":1e400}}", DJOB_EINVAL},
		{"[{\"type\":\"compute\",\"payload\":{}},5]", DJOB_EINVAL},
		{"[{\"type\":\"compute\",\"payload\":{}},{\"type\":\"compute\",\"payload\":{\"$x\":"
	         "1}}]",
	         DJOB_EINVAL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		djob_submission_t *s = (void *)1;
		djob_error_t err;
		CHECK_INT(submission(cases[i].body, 0, NULL, &s, &err), cases[i].rc);
		CHECK(s == NULL);
	}
}

static void test_limits_are_too_big_not_invalid(void)
{
	djob_submission_t *s = NULL;
	djob_error_t err;
	/* 1001 jobs */
	const char *one = "{\"type\":\"compute\",\"payload\":{}}";
	size_t n = strlen(one);
	char *batch = malloc(1001 * (n + 1) + 2);
	char *p = batch;
	*p++ = '[';
	for (int i = 0; i < 1001; i++) {
		memcpy(p, one, n);
		p += n;
		*p++ = i < 1000 ? ',' : ']';
	}
	*p = '\0';
	CHECK_INT(submission(batch, 0, NULL, &s, &err), DJOB_ETOOBIG);
	CHECK(strstr(err.message, "1000") != NULL);
	free(batch);
	/* a message over the producer's limit */
	CHECK_INT(submission("{\"type\":\"compute\",\"payload\":{\"s\":\"0123456789\"}}", 100, NULL,
	                     &s, &err),
	          DJOB_ETOOBIG);
	CHECK(strstr(err.message, "message.max.bytes") != NULL);
	CHECK_INT(submission("{\"type\":\"compute\",\"payload\":{\"s\":\"0123456789\"}}", 100000,
	                     NULL, &s, &err),
	          0);
	djob_submission_free(s);
}

static void test_the_idempotency_header_is_for_one_job(void)
{
	djob_submission_t *s = NULL;
	djob_error_t err;
	CHECK_INT(submission("[{\"type\":\"compute\",\"payload\":{}}]", 0, "k", &s, &err),
	          DJOB_EINVAL);
	CHECK_INT(submission("{\"type\":\"compute\",\"payload\":{}}", 0, "", &s, &err),
	          DJOB_EINVAL);
	CHECK_INT(submission("{\"type\":\"compute\",\"payload\":{}}", 0, "key-1", &s, &err), 0);
	if (s) {
		CHECK_STR(s->jobs[0].idempotency_key, "key-1");
		CHECK(strstr(s->jobs[0].message, "\"idempotencyKey\":\"key-1\"") != NULL);
	}
	djob_submission_free(s);
}

static int patch(const char *body, djob_patch_t **out, djob_error_t *err)
{
	return djob_patch_parse(out, body, strlen(body), err);
}

static void test_patch_bodies_are_parsed_and_checked(void)
{
	djob_patch_t *p = NULL;
	djob_error_t err;
	CHECK_INT(patch("{\"status\":\"completed\",\"workerId\":\"w1\",\"attempts\":2,"
	                "\"result\":{\"n\":-9223372036854775808},\"error\":\"none\"}",
	                &p, &err),
	          0);
	if (p) {
		CHECK_INT(p->to, DJOB_STATE_COMPLETED);
		CHECK_STR(p->worker_id, "w1");
		CHECK_INT(p->attempts, 2);
		CHECK_STR(p->error, "none");
		bson_iter_t it;
		CHECK(p->result && bson_iter_init_find(&it, p->result, "n") &&
		      bson_iter_int64(&it) == INT64_MIN);
	}
	djob_patch_free(p);
	CHECK_INT(patch("{\"status\":\"processing\",\"leaseMs\":5000}", &p, &err), 0);
	if (p)
		CHECK_INT(p->lease_ms, 5000);
	djob_patch_free(p);
	const char *bad[] = {
		"{\"status\":\"done\"}",
		"[1]",
		"{\"status\":\"completed\",\"result\":[1]}",
		"{\"status\":\"completed\",\"result\":{\"$x\":1}}",
		"{\"status\":\"completed\",\"result\":{\"a.b\":1}}",
		"{\"status\":\"completed\",\"result\":{\"n\":1e400}}",
		"{\"status\":\"failed\",\"error\":5}",
		"{\"status\":\"failed\",\"workerId\":\"\"}",
		"{\"status\":\"failed\",\"attempts\":0}",
		"{\"status\":\"processing\",\"leaseMs\":10}",
		"{\"status\":\"failed\",\"retry\":true}",
		"{\"status\":\"completed\",\"retry\":true,\"workerId\":\"w\",\"attempts\":1}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		p = (void *)1;
		CHECK_INT(patch(bad[i], &p, &err), DJOB_EINVAL);
		CHECK(p == NULL);
	}
}

/* cJSON's strings stop at a U+0000: such a string must be refused, not
 * read short ("compute\u0000x" as compute, two keys as one). Lengths count
 * characters, as the description's maxLength does. Found by schemathesis
 * (tests/openapi). */
static void test_strings_holding_u0000_are_refused_and_lengths_count_characters(void)
{
	djob_submission_t *s = (void *)1;
	djob_error_t err;
	const char *nul_bodies[] = {
		"{\"type\":\"compute\\u0000x\",\"payload\":{}}",
		"{\"type\":\"compute\",\"payload\":{},\"runAt\":\"2030-01-01T00:00:00Z\\u0000x\"}",
		"{\"type\":\"compute\",\"payload\":{},\"idempotencyKey\":\"a\\u0000b\"}",
		"[{\"type\":\"compute\",\"payload\":{}},{\"type\":\"data\\u0000\",\"payload\":{}}]",
	};
	for (size_t i = 0; i < sizeof nul_bodies / sizeof nul_bodies[0]; i++) {
		s = (void *)1;
		CHECK_INT(submission(nul_bodies[i], 0, NULL, &s, &err), DJOB_EINVAL);
		CHECK(s == NULL);
		CHECK(strstr(err.message, "U+0000") != NULL);
	}
	/* 200 characters of two bytes each are 200 characters; 201 are not. */
	char body[1024], key[512];
	key[0] = '\0';
	for (int i = 0; i < 200; i++)
		strcat(key, "\xc3\xa9");
	snprintf(body, sizeof body,
	         "{\"type\":\"compute\",\"payload\":{},\"idempotencyKey\":\"%s\"}", key);
	CHECK_INT(submission(body, 0, NULL, &s, &err), 0);
	djob_submission_free(s);
	CHECK_INT(submission("{\"type\":\"compute\",\"payload\":{}}", 0, key, &s, &err), 0);
	djob_submission_free(s);
	strcat(key, "\xc3\xa9");
	snprintf(body, sizeof body,
	         "{\"type\":\"compute\",\"payload\":{},\"idempotencyKey\":\"%s\"}", key);
	CHECK_INT(submission(body, 0, NULL, &s, &err), DJOB_EINVAL);
	CHECK_INT(submission("{\"type\":\"compute\",\"payload\":{}}", 0, key, &s, &err),
	          DJOB_EINVAL);
	/* A header key is bytes: one that is not UTF-8 is refused. */
	CHECK_INT(submission("{\"type\":\"compute\",\"payload\":{}}", 0, "\xff-k", &s, &err),
	          DJOB_EINVAL);
	CHECK(strstr(err.message, "UTF-8") != NULL);
	djob_patch_t *p;
	const char *nul_patches[] = {
		"{\"status\":\"failed\\u0000x\"}",
		"{\"status\":\"failed\",\"error\":\"boom\\u0000hidden\"}",
		"{\"status\":\"processing\",\"workerId\":\"w1\\u0000w2\"}",
	};
	for (size_t i = 0; i < sizeof nul_patches / sizeof nul_patches[0]; i++) {
		p = (void *)1;
		CHECK_INT(djob_patch_parse(&p, nul_patches[i], strlen(nul_patches[i]), &err),
		          DJOB_EINVAL);
		CHECK(p == NULL);
		CHECK(strstr(err.message, "U+0000") != NULL);
	}
}

int main(void)
{
	djob_error_t err;
	if (djob_config_new(&conf, &err) != 0)
		return 1;
	RUN(test_a_single_job_keeps_its_payload_exactly);
	RUN(test_a_batch_gives_each_job_its_own_payload);
	RUN(test_bad_submissions_are_refused_with_the_right_code);
	RUN(test_limits_are_too_big_not_invalid);
	RUN(test_the_idempotency_header_is_for_one_job);
	RUN(test_patch_bodies_are_parsed_and_checked);
	RUN(test_strings_holding_u0000_are_refused_and_lengths_count_characters);
	djob_config_free(conf);
	return check_report("unit_request");
}
