/* ISO-8601 dates, UUIDs, clocks. */
#include "check.h"
#include "djob_private.h"

#include <stdlib.h>

static void test_format_iso_gives_utc_with_milliseconds(void)
{
	char buf[32];

	djob_format_iso(0, buf);
	CHECK_STR(buf, "1970-01-01T00:00:00.000Z");
	djob_format_iso(1744226203090, buf);
	CHECK_STR(buf, "2025-04-09T19:16:43.090Z");
	djob_format_iso(951782400000 + 999, buf); /* a leap day */
	CHECK_STR(buf, "2000-02-29T00:00:00.999Z");
	djob_format_iso(-1, buf);
	CHECK_STR(buf, "1969-12-31T23:59:59.999Z");
	CHECK_INT(strlen(buf), 24);
}

static void test_parse_iso_reads_what_format_writes(void)
{
	static const int64_t samples[] = {
		0, 1, 999, 1000, 1744226203090, 951782400000, 4102444799999, -1, -86400000};
	char buf[32];
	int64_t ms;

	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		djob_format_iso(samples[i], buf);
		ms = 12345;
		CHECK_INT(djob_parse_iso(buf, &ms), 0);
		CHECK_INT(ms, samples[i]);
	}
}

static void test_parse_iso_accepts_fractions_and_offsets(void)
{
	int64_t ms = 0;

	CHECK_INT(djob_parse_iso("2025-04-09T19:16:43Z", &ms), 0);
	CHECK_INT(ms, 1744226203000);
	CHECK_INT(djob_parse_iso("2025-04-09T19:16:43.09Z", &ms), 0);
	CHECK_INT(ms, 1744226203090);
	CHECK_INT(djob_parse_iso("2025-04-09T19:16:43.1Z", &ms), 0);
	CHECK_INT(ms, 1744226203100);
	CHECK_INT(djob_parse_iso("2025-04-09T19:16:43.090999999Z", &ms), 0);
	CHECK_INT(ms, 1744226203090);
	CHECK_INT(djob_parse_iso("2025-04-09T21:16:43.090+02:00", &ms), 0);
	CHECK_INT(ms, 1744226203090);
	CHECK_INT(djob_parse_iso("2025-04-09T14:46:43.090-04:30", &ms), 0);
	CHECK_INT(ms, 1744226203090);
	CHECK_INT(djob_parse_iso("2025-04-09T19:16:43+00:00", &ms), 0);
	CHECK_INT(ms, 1744226203000);
	CHECK_INT(djob_parse_iso("2024-02-29T00:00:00Z", &ms), 0);
}

static void test_parse_iso_rejects_anything_else(void)
{
	static const char *bad[] = {
		"",
		"2025-04-09",
		"2025-04-09T19:16:43",             /* no zone */
		"2025-04-09 19:16:43Z",            /* space */
		"2025-04-09t19:16:43z",            /* lowercase */
		"2025-04-09T19:16:43.Z",           /* empty fraction */
		"2025-04-09T19:16:43.0000000001Z", /* 10 digits */
		"2025-04-09T19:16:43ZZ",           /* trailing junk */
		"2025-04-09T19:16:43Z ",
		"2025-04-09T19:16:43+0200",
		"2025-04-09T19:16:43+02",
		"2025-04-09T19:16:43+24:00",
		"2025-04-09T19:16:43+02:60",
		"2025-4-09T19:16:43Z",
		"2025-13-09T19:16:43Z",
		"2025-00-09T19:16:43Z",
		"2025-04-00T19:16:43Z",
		"2025-04-31T19:16:43Z",
		"2025-02-29T00:00:00Z", /* not a leap year */
		"1900-02-29T00:00:00Z",
		"2025-04-09T24:00:00Z",
		"2025-04-09T19:60:43Z",
		"2025-04-09T19:16:60Z",
		"+2025-04-09T19:16:43Z",
		"20250409T191643Z",
		"2025-04-09T19:16:43.090Zjunk",
		"garbage",
	};
	int64_t ms;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 42;
		int rc = djob_parse_iso(bad[i], &ms);
		if (rc != DJOB_EINVAL)
			fprintf(stderr, "accepted \"%s\"\n", bad[i]);
		CHECK_INT(rc, DJOB_EINVAL);
	}
	CHECK_INT(djob_parse_iso(NULL, &ms), DJOB_EINVAL);
}

static int is_hex_lower(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int cmp_ids(const void *a, const void *b)
{
	return memcmp(a, b, 37);
}

static void test_uuid_v4_has_the_v4_form(void)
{
	char id[37];
	int bad = 0;

	for (int n = 0; n < 1000; n++) {
		djob_uuid_v4(id);
		for (int i = 0; i < 36; i++) {
			if (i == 8 || i == 13 || i == 18 || i == 23)
				bad += id[i] != '-';
			else
				bad += !is_hex_lower(id[i]);
		}
		bad += id[36] != '\0';
		bad += id[14] != '4';
		bad += strchr("89ab", id[19]) == NULL;
		bad += !djob_id_is_valid(id);
	}
	CHECK_INT(bad, 0);
}

static void test_uuid_v4_is_unique_over_10000(void)
{
	enum {
		N = 10000
	};
	char(*ids)[37] = malloc(N * sizeof(*ids));
	int dups = 0;

	for (int i = 0; i < N; i++)
		djob_uuid_v4(ids[i]);
	qsort(ids, N, sizeof(*ids), cmp_ids);
	for (int i = 1; i < N; i++)
		dups += memcmp(ids[i - 1], ids[i], 37) == 0;
	CHECK_INT(dups, 0);
	free(ids);
}

static void test_clocks_move_forward(void)
{
	int64_t wall = djob_now_ms();
	int64_t mono = djob_mono_ms();

	CHECK(wall > 1700000000000); /* after November 2023 */
	CHECK(djob_mono_ms() >= mono);
	CHECK(djob_now_ms() >= wall - 1000);
}

static void test_strdup_handles_null(void)
{
	char *s = djob_strdup("abc");

	CHECK_STR(s, "abc");
	free(s);
	CHECK(djob_strdup(NULL) == NULL);
}

int main(void)
{
	RUN(test_format_iso_gives_utc_with_milliseconds);
	RUN(test_parse_iso_reads_what_format_writes);
	RUN(test_parse_iso_accepts_fractions_and_offsets);
	RUN(test_parse_iso_rejects_anything_else);
	RUN(test_uuid_v4_has_the_v4_form);
	RUN(test_uuid_v4_is_unique_over_10000);
	RUN(test_clocks_move_forward);
	RUN(test_strdup_handles_null);
	return check_report("unit_util");
}
