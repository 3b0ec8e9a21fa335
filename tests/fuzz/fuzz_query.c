/*
 * GET /jobs's query string and the ids of /jobs/:id: the query as the API
 * decodes it (djob_api_list_query) and the find filter the store builds
 * from it (djob_store_list_filter), without a server. What reaches the
 * filter must be checked values only: a known status, a well-formed type,
 * a limit from 1 to 1000 and a cursor of digits and a job id; nothing the
 * client wrote becomes a key or an operator of the filter.
 *
 * The input is the query string; its first 36 bytes are also tried as a
 * job id (djob_id_is_valid), against the canonical form spelled out here.
 */
#include "fuzz.h"

#include "http_private.h"
#include "store_private.h"

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int canonical_uuid(const char *s)
{
	if (strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !is_hex(s[i]))
			return 0;
	return 1;
}

static void check_filter(const bson_t *f, const djob_list_query_t *q)
{
	bson_iter_t it;
	int keys = 0;

	FUZZ_ASSERT(bson_validate(f, BSON_VALIDATE_UTF8, NULL));
	FUZZ_ASSERT(bson_iter_init(&it, f));
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		keys++;
		if (strcmp(k, "status") == 0) {
			FUZZ_ASSERT(q->status && BSON_ITER_HOLDS_UTF8(&it));
			FUZZ_ASSERT(djob_state_parse(bson_iter_utf8(&it, NULL)) !=
			            DJOB_STATE_INVALID);
		} else if (strcmp(k, "type") == 0) {
			FUZZ_ASSERT(q->type && BSON_ITER_HOLDS_UTF8(&it));
			FUZZ_ASSERT(djob_type_is_valid(bson_iter_utf8(&it, NULL)));
		} else {
			FUZZ_ASSERT(strcmp(k, "$or") == 0 && q->after &&
			            BSON_ITER_HOLDS_ARRAY(&it));
		}
	}
	FUZZ_ASSERT(keys == !!q->status + !!q->type + !!q->after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *query = fuzz_cstr(data, size);
	djob_list_query_t q;
	djob_error_t err;

	char id[37];
	snprintf(id, sizeof id, "%s", query);
	FUZZ_ASSERT(!!djob_id_is_valid(id) == canonical_uuid(id));

	memset(&err, 0, sizeof err);
	int rc = djob_api_list_query(&q, query, &err);
	if (rc != 0) {
		FUZZ_ASSERT(rc == DJOB_EINVAL && err.message[0] != '\0');
		FUZZ_ASSERT(!q.status && !q.type && !q.after && q.limit == 0);
		free(query);
		return 0;
	}
	FUZZ_ASSERT(q.limit >= 0 && q.limit <= 1000);
	FUZZ_ASSERT(!q.status || *q.status);
	FUZZ_ASSERT(!q.type || *q.type);
	FUZZ_ASSERT(!q.after || *q.after);

	bson_t f;
	int limit = q.limit;
	rc = djob_store_list_filter(&f, &limit, q.status, q.type, q.after, &err);
	if (rc == 0) {
		FUZZ_ASSERT(limit >= 1 && limit <= 1000);
		FUZZ_ASSERT(!q.status || djob_state_parse(q.status) != DJOB_STATE_INVALID);
		FUZZ_ASSERT(!q.type || djob_type_is_valid(q.type));
		if (q.after) {
			const char *dash = strchr(q.after, '-');
			FUZZ_ASSERT(dash && dash > q.after && canonical_uuid(dash + 1));
			for (const char *p = q.after; p < dash; p++)
				FUZZ_ASSERT(*p >= '0' && *p <= '9');
		}
		check_filter(&f, &q);
		bson_destroy(&f);
	} else {
		FUZZ_ASSERT(rc == DJOB_EINVAL && err.message[0] != '\0');
	}
	djob_api_list_query_clear(&q);
	free(query);
	return 0;
}
