/* GET /jobs's query as the API reads it (djob_api_list_query) and the
 * find filter the store builds from it (djob_store_list_filter); inputs
 * from tests/fuzz's query target. */
#include "check.h"
#include "http_private.h"
#include "store_private.h"

#define ID "3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f"

/* The filter of a query, or NULL with *rc set when refused. */
static char *filter_of(const char *query, int *rc)
{
	djob_list_query_t q;
	djob_error_t e;
	bson_t f;

	*rc = djob_api_list_query(&q, query, &e);
	if (*rc != 0)
		return NULL;
	int limit = q.limit;
	*rc = djob_store_list_filter(&f, &limit, q.status, q.type, q.after, &e);
	djob_api_list_query_clear(&q);
	if (*rc != 0)
		return NULL;
	char *json = bson_as_relaxed_extended_json(&f, NULL);
	bson_destroy(&f);
	return json;
}

static void test_query_values_decoded_and_checked(void)
{
	djob_list_query_t q;
	djob_error_t e;

	CHECK_INT(djob_api_list_query(&q, "status=q%75eued&type=a%2Db&limit=7&after=", &e), 0);
	CHECK_STR(q.status, "queued");
	CHECK_STR(q.type, "a-b");
	CHECK_INT(q.limit, 7);
	CHECK(q.after == NULL); /* empty is absent */
	djob_api_list_query_clear(&q);
	CHECK_INT(djob_api_list_query(&q, NULL, &e), 0);
	CHECK(q.status == NULL && q.type == NULL && q.after == NULL && q.limit == 0);
	djob_api_list_query_clear(&q);
	static const char *const bad_limits[] = {"limit=0", "limit=1001", "limit=-1", "limit=5x",
	                                         "limit=99999999999999999999"};
	for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++) {
		CHECK_INT(djob_api_list_query(&q, bad_limits[i], &e), DJOB_EINVAL);
		CHECK_STR(e.message, "limit must be from 1 to 1000");
		CHECK(q.status == NULL && q.limit == 0);
	}
}

static void test_nul_in_a_query_value_is_not_decoded(void)
{
	int rc;
	char *v = djob_http_query("status=queued%00x", "status");
	CHECK_STR(v, "queued%00x");
	free(v);
	CHECK(filter_of("status=queued%00x", &rc) == NULL);
	CHECK_INT(rc, DJOB_EINVAL);
}

static void test_cursor_is_digits_dash_id(void)
{
	int rc;
	char *f = filter_of("after=1744226203090-" ID, &rc);
	CHECK_INT(rc, 0);
	CHECK(f != NULL && strstr(f, "\"$lt\" : \"" ID "\"") != NULL);
	bson_free(f);
	static const char *const bad[] = {
		"after=%20-5-" ID, /* space and sign: strtoll takes both */
		"after=+5-" ID,
		"after=-5-" ID,                   /* signs */
		"after=99999999999999999999-" ID, /* beyond int64 */
		"after=-" ID,
		"after=5-" ID "x",
		"after=5-xyz",
		"after=5",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK(filter_of(bad[i], &rc) == NULL);
		CHECK_INT(rc, DJOB_EINVAL);
	}
}

static void test_filter_holds_only_checked_values(void)
{
	int rc;
	char *f = filter_of("status=completed&type=compute", &rc);
	CHECK_STR(f, "{ \"status\" : \"completed\", \"type\" : \"compute\" }");
	bson_free(f);
	f = filter_of("status[$ne]=queued", &rc); /* an unknown name: ignored */
	CHECK(f != NULL);
	bson_free(f);
	CHECK(filter_of("type=$where", &rc) == NULL);
	CHECK(filter_of("status=running", &rc) == NULL);
}

int main(void)
{
	RUN(test_query_values_decoded_and_checked);
	RUN(test_nul_in_a_query_value_is_not_decoded);
	RUN(test_cursor_is_digits_dash_id);
	RUN(test_filter_holds_only_checked_values);
	return check_report("unit_list_query");
}
