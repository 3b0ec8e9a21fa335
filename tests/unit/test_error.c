/* Error texts, HTTP statuses, the error record, version. */
#include "check.h"
#include "djob_private.h"

#include <stdlib.h>

static void test_every_code_has_a_one_sentence_text(void)
{
	for (int code = DJOB_EINTERNAL; code <= DJOB_OK; code++) {
		const char *s = djob_strerror(code);
		size_t n = s ? strlen(s) : 0;
		CHECK(n > 0);
		if (n == 0)
			continue;
		CHECK(s[0] >= 'A' && s[0] <= 'Z');
		CHECK(s[n - 1] != '.');
		CHECK(strcmp(s, djob_strerror(-100)) != 0);
	}
	CHECK_STR(djob_strerror(DJOB_ENOTFOUND), "Job not found");
	CHECK(djob_strerror(12345) != NULL);
}

static void test_codes_map_to_http_statuses(void)
{
	CHECK_INT(djob_error_http_status(DJOB_OK), 200);
	CHECK_INT(djob_error_http_status(DJOB_EINVAL), 400);
	CHECK_INT(djob_error_http_status(DJOB_EUNAUTHORIZED), 401);
	CHECK_INT(djob_error_http_status(DJOB_EFORBIDDEN), 403);
	CHECK_INT(djob_error_http_status(DJOB_ENOTFOUND), 404);
	CHECK_INT(djob_error_http_status(DJOB_ECONFLICT), 409);
	CHECK_INT(djob_error_http_status(DJOB_ESTATE), 409);
	CHECK_INT(djob_error_http_status(DJOB_ETOOBIG), 413);
	CHECK_INT(djob_error_http_status(DJOB_ENOMEM), 500);
	CHECK_INT(djob_error_http_status(DJOB_EINTERNAL), 500);
	CHECK_INT(djob_error_http_status(DJOB_EHTTP), 502);
	CHECK_INT(djob_error_http_status(DJOB_EKAFKA), 503);
	CHECK_INT(djob_error_http_status(DJOB_EMONGO), 503);
	CHECK_INT(djob_error_http_status(DJOB_ETIMEOUT), 504);
	CHECK_INT(djob_error_http_status(-99), 500);
}

static void test_set_error_fills_the_record_and_returns_the_code(void)
{
	djob_error_t err;
	char long_text[600];

	CHECK_INT(djob_set_error(&err, DJOB_EKAFKA, 1, "Broker %s is down", "k1"), DJOB_EKAFKA);
	CHECK_INT(err.code, DJOB_EKAFKA);
	CHECK_INT(err.retriable, 1);
	CHECK_STR(err.message, "Broker k1 is down");
	CHECK_INT(djob_set_error(NULL, DJOB_EINVAL, 0, "ignored %d", 1), DJOB_EINVAL);

	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	djob_set_error(&err, DJOB_EINVAL, 0, "%s", long_text);
	CHECK_INT(strlen(err.message), DJOB_ERROR_MESSAGE_MAX - 1);
}

static void test_free_and_version(void)
{
	djob_free(NULL);
	djob_free(malloc(16));
	CHECK_STR(djob_version(), DJOB_VERSION_STRING);
}

int main(void)
{
	RUN(test_every_code_has_a_one_sentence_text);
	RUN(test_codes_map_to_http_statuses);
	RUN(test_set_error_fills_the_record_and_returns_the_code);
	RUN(test_free_and_version);
	return check_report("unit_error");
}
