/*
 * Fuzz target: a POST /jobs body (one job or a batch) and its
 * Idempotency-Key header, through djob_submission_parse. The first byte
 * chooses the header (none, a key, an empty key); the rest is the body.
 * What is accepted must be what djob keeps: every payload passes libbson's
 * checks, and every job's Kafka message reads back (as a worker reads it)
 * with the same payload, rendered the same.
 */
#include "fuzz.h"
#include "json.h"
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static djob_config_t *conf;

/* A payload as it travels: the message's "payload", rendered again. */
static void check_message(const djob_new_job_t *j)
{
	bson_t *msg = NULL;
	FUZZ_ASSERT(djob_json_parse(j->message, j->message_len, "Message", NULL, &msg, NULL) == 0);
	bson_iter_t it;
	const uint8_t *d;
	uint32_t n;
	bson_t sub;
	FUZZ_ASSERT(bson_iter_init_find(&it, msg, "payload") && BSON_ITER_HOLDS_DOCUMENT(&it));
	bson_iter_document(&it, &n, &d);
	FUZZ_ASSERT(bson_init_static(&sub, d, n));
	char *a = djob_json_print(j->payload), *b = djob_json_print(&sub);
	FUZZ_ASSERT(a && b && strcmp(a, b) == 0);
	free(a);
	free(b);
	bson_destroy(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!conf && djob_config_new(&conf, NULL) != 0)
		abort();
	if (size == 0)
		return 0;
	const char *keys[] = {NULL, "fuzz-key", ""};
	const char *key = keys[data[0] % 3];
	char *body = malloc(size);
	FUZZ_ASSERT(body);
	memcpy(body, data + 1, size - 1);
	djob_submission_t *s = NULL;
	djob_error_t err;
	int rc = djob_submission_parse(&s, conf, 1000000, body, size - 1, key, &err);
	if (rc == 0) {
		FUZZ_ASSERT(s && s->n >= 1 && s->n <= DJOB_MAX_BATCH);
		for (size_t i = 0; i < s->n; i++) {
			FUZZ_ASSERT(djob_json_check_doc(s->jobs[i].payload, "payload", NULL) == 0);
			FUZZ_ASSERT(djob_id_is_valid(s->jobs[i].id));
			check_message(&s->jobs[i]);
		}
	} else {
		FUZZ_ASSERT(s == NULL);
		FUZZ_ASSERT(rc == DJOB_EINVAL || rc == DJOB_ETOOBIG);
		FUZZ_ASSERT(err.message[0] != '\0');
		for (const char *p = err.message; *p; p++)
			FUZZ_ASSERT((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
	}
	djob_submission_free(s);
	free(body);
	return 0;
}
