/* json.c: the pre-scan's depth and number limits, the parse, and the
 * rendering that keeps integers and doubles exact. */
#include "check.h"
#include "json.h"

#include <pthread.h>
#include <stdlib.h>

static int parse(const char *text, djob_error_t *err)
{
	cJSON *tree = NULL;
	bson_t *doc = NULL;
	int rc = djob_json_parse(text, strlen(text), "Body", &tree, &doc, err);
	cJSON_Delete(tree);
	if (doc)
		bson_destroy(doc);
	return rc;
}

/* Parse and render again: the text djob would hand on, or NULL. */
static char *round_trip(const char *text)
{
	bson_t *doc = NULL;
	if (djob_json_parse(text, strlen(text), "Body", NULL, &doc, NULL) != 0)
		return NULL;
	char *out = djob_json_print(doc);
	bson_destroy(doc);
	return out;
}

static char *repeat(const char *unit, size_t n, const char *tail)
{
	size_t u = strlen(unit), t = strlen(tail);
	char *s = malloc(u * n + t + 1);
	for (size_t i = 0; i < n; i++)
		memcpy(s + i * u, unit, u);
	memcpy(s + u * n, tail, t + 1);
	return s;
}

static void test_nesting_over_32_levels_is_refused_at_any_depth(void)
{
	djob_error_t err;
	char *ok = repeat("[", 32, "");
	char *ok_closed = malloc(65);
	memcpy(ok_closed, ok, 32);
	memset(ok_closed + 32, ']', 32);
	ok_closed[64] = '\0';
	CHECK_INT(parse(ok_closed, &err), 0);
	size_t depths[] = {33, 900, 100000, 1 << 20};
	for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
		char *deep = repeat("[", depths[i], "");
		CHECK_INT(parse(deep, &err), DJOB_EINVAL);
		CHECK(strstr(err.message, "deeper than 32 levels") != NULL);
		free(deep);
	}
	/* Brackets inside strings are text, not nesting. */
	char *in_string = repeat("[", 1000, "\"}");
	char *body = malloc(strlen(in_string) + 16);
	sprintf(body, "{\"s\":\"%s", in_string);
	CHECK_INT(parse(body, &err), 0);
	free(body);
	free(in_string);
	free(ok);
	free(ok_closed);
}

static void *parse_deep(void *arg)
{
	djob_error_t err;
	*(int *)arg =
		parse("{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]"
	              "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
	              &err);
	char *deep = repeat("{\"a\":", 200000, "");
	*((int *)arg + 1) = parse(deep, &err);
	free(deep);
	return NULL;
}

static void test_deep_text_is_refused_on_a_small_thread_stack(void)
{
	/* civetweb's threads have small stacks: the crash of issue 13. */
	pthread_attr_t a;
	pthread_t t;
	int rc[2] = {1, 1};
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, 64 * 1024);
	CHECK_INT(pthread_create(&t, &a, parse_deep, rc), 0);
	pthread_join(t, NULL);
	pthread_attr_destroy(&a);
	CHECK_INT(rc[0], DJOB_EINVAL);
	CHECK_INT(rc[1], DJOB_EINVAL);
}

static void test_integers_must_fit_int64(void)
{
	djob_error_t err;
	CHECK_INT(parse("{\"n\":9223372036854775807}", &err), 0);
	CHECK_INT(parse("{\"n\":-9223372036854775808}", &err), 0);
	CHECK_INT(parse("{\"n\":9223372036854775808}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "9223372036854775808") != NULL);
	CHECK(strstr(err.message, "64-bit") != NULL);
	CHECK_INT(parse("{\"n\":-9223372036854775809}", &err), DJOB_EINVAL);
	CHECK_INT(parse("[123456789012345678901234567890]", &err), DJOB_EINVAL);
	char *long_int = repeat("9", 10000, "]");
	long_int[0] = '[';
	CHECK_INT(parse(long_int, &err), DJOB_EINVAL);
	CHECK(strlen(err.message) < 200);
	free(long_int);
}

static void test_numbers_outside_a_double_and_non_finite_are_refused(void)
{
	djob_error_t err;
	CHECK_INT(parse("{\"n\":1e400}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "range of a double") != NULL);
	CHECK_INT(parse("{\"n\":-1e400}", &err), DJOB_EINVAL);
	CHECK_INT(parse("{\"n\":1e-400}", &err), DJOB_EINVAL);
	CHECK_INT(parse("{\"n\":NaN}", &err), DJOB_EINVAL);
	CHECK_INT(parse("{\"n\":Infinity}", &err), DJOB_EINVAL);
	CHECK_INT(parse("{\"n\":-Infinity}", &err), DJOB_EINVAL);
	CHECK_INT(parse("{\"n\":1.7976931348623157e308}", &err), 0);
	CHECK_INT(parse("{\"n\":5e-324}", &err), 0);
}

/* cJSON reads -012 as -12 and libbson as -0: only JSON's own spelling of a
 * number gets through, so both read the same value. */
static void test_numbers_outside_jsons_grammar_are_refused(void)
{
	djob_error_t err;
	const char *bad[] = {"{\"n\":-0254740993}", "{\"n\":012}", "{\"n\":00}",
	                     "{\"n\":1.}",          "{\"n\":1.e5}", "{\"n\":1e}",
	                     "{\"n\":1e+}",         "{\"n\":-}",    "{\"n\":1-2}",
	                     "{\"n\":+1}",          "[1e5e5]",      "[--1]"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_INT(parse(bad[i], &err), DJOB_EINVAL);
	}
	CHECK_INT(parse("{\"n\":012}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "012, which is not a JSON number") != NULL);
	const char *good[] = {"{\"n\":0}", "{\"n\":-0}", "{\"n\":-0.0}", "{\"n\":0.5e-3}",
	                      "{\"n\":10E+2}", "{\"n\":-1e-0}", "[0,1,-2]"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		CHECK_INT(parse(good[i], &err), 0);
}

static void test_numbers_render_exactly(void)
{
	char *out = round_trip("{\"a\":9007199254740993,\"b\":-9223372036854775808,"
	                       "\"c\":9223372036854775807,\"d\":0.1,\"e\":1.0,\"f\":-0.0,"
	                       "\"g\":-0,\"h\":1e300,\"i\":[2147483648,2.5,1e2],\"j\":12}");
	CHECK_STR(out, "{\"a\":9007199254740993,\"b\":-9223372036854775808,"
	               "\"c\":9223372036854775807,\"d\":0.1,\"e\":1.0,\"f\":-0.0,"
	               "\"g\":0,\"h\":1e+300,\"i\":[2147483648,2.5,1e+02],\"j\":12}");
	/* What is rendered reads back as the same values. */
	char *again = out ? round_trip(out) : NULL;
	CHECK_STR(again, out);
	free(again);
	free(out);
	out = round_trip("{\"x\":0.30000000000000004,\"y\":1.7976931348623157e308}");
	CHECK_STR(out, "{\"x\":0.30000000000000004,\"y\":1.7976931348623157e+308}");
	free(out);
}

static void test_dollar_keys_and_extended_json_are_refused(void)
{
	djob_error_t err;
	CHECK_INT(parse("{\"n\":{\"$numberLong\":\"5\"}}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "$numberLong") != NULL);
	CHECK_INT(parse("{\"\\u0024oid\":\"x\"}", &err), DJOB_EINVAL);
	CHECK_INT(parse("[{\"a\":[{\"$date\":1}]}]", &err), DJOB_EINVAL);
	/* '$' inside a key or a value is text. */
	CHECK_INT(parse("{\"a$\":\"$x\"}", &err), 0);
}

static void test_grammar_trailing_text_and_top_level_scalars_are_refused(void)
{
	djob_error_t err;
	const char *bad[] = {"",        " ",          "{",     "{}x",      "{}{}",
	                     "{} [",    "42",         "\"s\"", "null",     "true",
	                     "{'a':1}", "{\"a\":01}", "[1,]",  "{\"a\":}", "\xef\xbb\xbf{}"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_INT(parse(bad[i], &err), DJOB_EINVAL);
		for (const char *p = err.message; *p; p++)
			CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
	}
	CHECK_INT(parse("  {\"a\":1}\r\n\t ", &err), 0);
	CHECK_INT(djob_json_parse("{}", 0, "Body", NULL, NULL, &err), DJOB_EINVAL);
	CHECK_INT(djob_json_parse(NULL, 3, "Body", NULL, NULL, &err), DJOB_EINVAL);
	/* A length shorter than the text: only that much is read. */
	CHECK_INT(djob_json_parse("{}garbage", 2, "Body", NULL, NULL, &err), 0);
}

static int check_doc(const char *text, djob_error_t *err)
{
	bson_t *doc = NULL;
	int rc = djob_json_parse(text, strlen(text), "payload", NULL, &doc, err);
	if (rc == 0)
		rc = djob_json_check_doc(doc, "payload", err);
	if (doc)
		bson_destroy(doc);
	return rc;
}

static void test_documents_are_checked_by_libbson(void)
{
	djob_error_t err;
	CHECK_INT(check_doc("{\"a\":{\"b.c\":1}}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "b.c") != NULL);
	CHECK_INT(check_doc("{\"a\":[{\"\":1}]}", &err), DJOB_EINVAL);
	CHECK_INT(check_doc("{\"s\":\"a\\u0000b\"}", &err), DJOB_EINVAL);
	CHECK_INT(check_doc("{\"a\\u0000b\":1}", &err), DJOB_EINVAL);
	CHECK_INT(check_doc("{\"s\":\"\xc3\"}", &err), DJOB_EINVAL);
	CHECK_INT(check_doc("{\"caf\xc3\xa9\":\"\\u00e9\\ud83d\\ude00\"}", &err), 0);
	/* Over 15 MiB as BSON: too big, not invalid. */
	size_t n = DJOB_JSON_MAX_DOC;
	char *big = malloc(n + 16);
	memcpy(big, "{\"s\":\"", 6);
	memset(big + 6, 'x', n);
	memcpy(big + 6 + n, "\"}", 3);
	CHECK_INT(check_doc(big, &err), DJOB_ETOOBIG);
	free(big);
}

int main(void)
{
	RUN(test_nesting_over_32_levels_is_refused_at_any_depth);
	RUN(test_deep_text_is_refused_on_a_small_thread_stack);
	RUN(test_integers_must_fit_int64);
	RUN(test_numbers_outside_a_double_and_non_finite_are_refused);
	RUN(test_numbers_outside_jsons_grammar_are_refused);
	RUN(test_numbers_render_exactly);
	RUN(test_dollar_keys_and_extended_json_are_refused);
	RUN(test_grammar_trailing_text_and_top_level_scalars_are_refused);
	RUN(test_documents_are_checked_by_libbson);
	return check_report("unit_json");
}
