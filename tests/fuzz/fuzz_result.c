/*
 * The JSON a handler or plugin returns (djob_job_set_result). An accepted
 * result must be a JSON object that libbson reads (what the store writes
 * to MongoDB), and its text must be a fixed point: set again, it comes
 * back the same.
 *
 * The stricter checks need issue 13's JSON layer (libdjob/json.c), which
 * refuses what MongoDB cannot keep and renders numbers exactly; they are
 * compiled in once it is there (DJOB_FUZZ_JSON_CHECKS) and can be asked
 * for without it (DJOB_FUZZ_JSON_CHECKS=1 in the environment, to see what
 * it will fix): no '$' prefix, '.' or empty key, UTF-8 strings, and the
 * same values as the handler gave, in the same order, every number the
 * same double (cJSON's 15 digits turn 0.30000000000000004 into 0.3 and
 * 1.7976931348623157e308 into a number that reads back as infinity).
 */
#include "fuzz.h"

#include "djob_private.h"

#include <bson/bson.h>

/* The same tree: members in the same order, numbers the same double. */
static int same_values(const cJSON *a, const cJSON *b)
{
	if ((a->type & 0xFF) != (b->type & 0xFF))
		return 0;
	if (cJSON_IsNumber(a))
		return a->valuedouble == b->valuedouble;
	if (cJSON_IsString(a))
		return strcmp(a->valuestring, b->valuestring) == 0;
	const cJSON *x = a->child, *y = b->child;
	for (; x && y; x = x->next, y = y->next)
		if ((cJSON_IsObject(a) && strcmp(x->string, y->string) != 0) || !same_values(x, y))
			return 0;
	return x == NULL && y == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	djob_job_t *job = calloc(1, sizeof *job);
	djob_error_t err;

	FUZZ_ASSERT(job != NULL);
	memset(&err, 0, sizeof err);
	int rc = djob_job_set_result(job, (const char *)data, size, &err);
	if (rc != 0) {
		FUZZ_ASSERT(rc < 0 && err.code == rc && err.message[0] != '\0');
		FUZZ_ASSERT(djob_job_result(job) == NULL);
		djob_job_free(job);
		return 0;
	}
	char *text = strdup(djob_job_result(job));
	FUZZ_ASSERT(text != NULL);
	cJSON *result = cJSON_Parse(text);
	FUZZ_ASSERT(cJSON_IsObject(result));
	cJSON_Delete(result);

	bson_error_t e;
	bson_t *doc = bson_new_from_json((const uint8_t *)text, -1, &e);
	if (fuzz_json_checks()) {
		if (doc == NULL)
			fprintf(stderr, "libbson refuses the result: %s\n", e.message);
		FUZZ_ASSERT(doc != NULL);
		bool valid = bson_validate_with_error(
			doc,
			BSON_VALIDATE_UTF8 | BSON_VALIDATE_DOLLAR_KEYS | BSON_VALIDATE_DOT_KEYS |
				BSON_VALIDATE_EMPTY_KEYS,
			&e);
		if (!valid)
			fprintf(stderr, "MongoDB cannot keep the result: %s\n", e.message);
		FUZZ_ASSERT(valid);
		cJSON *given = cJSON_ParseWithLength((const char *)data, size);
		cJSON *kept = cJSON_Parse(text);
		FUZZ_ASSERT(given != NULL && kept != NULL);
		if (!same_values(given, kept))
			fprintf(stderr, "the result changed: %.*s became %s\n", (int)size,
			        (const char *)data, text);
		FUZZ_ASSERT(same_values(given, kept));
		cJSON_Delete(given);
		cJSON_Delete(kept);
		FUZZ_ASSERT(djob_job_set_result(job, text, strlen(text), &err) == 0);
		if (strcmp(text, djob_job_result(job)) != 0)
			fprintf(stderr, "set again, %s became %s\n", text, djob_job_result(job));
		FUZZ_ASSERT(strcmp(text, djob_job_result(job)) == 0);
	}
	if (doc)
		bson_destroy(doc);
	free(text);
	djob_job_free(job);
	return 0;
}
