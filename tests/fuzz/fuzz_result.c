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
 * it will fix): no '$' prefix, '.' or empty key, UTF-8 strings, and no
 * number rendered so that it reads back as another (1.7976931348623157e308
 * printed as 1.79769313486232e+308 reads back as infinity).
 */
#include "fuzz.h"

#include "djob_private.h"

#include <bson/bson.h>

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
