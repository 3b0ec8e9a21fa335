/*
 * Cron expressions (libdjob/cron.c): parsing, refusals naming the field,
 * time zones, and next due times checked against dates worked out by hand.
 */
#include "check.h"
#include "cron.h"

static int64_t iso(const char *s)
{
	int64_t ms = 0;
	djob_parse_iso(s, &ms);
	return ms;
}

/* The next due time of expr after `after`, as ISO text. */
static const char *next(const char *expr, const char *after, int offset)
{
	static char out[32];
	djob_cron_t c;
	djob_error_t e;
	if (djob_cron_parse(&c, expr, &e) != 0)
		return "parse error";
	int64_t t = djob_cron_next(&c, iso(after), offset);
	if (t < 0)
		return "never";
	djob_format_iso(t, out);
	return out;
}

#define CHECK_NEXT(expr, after, offset, want)                                                      \
	do {                                                                                       \
		const char *got_ = next(expr, after, offset);                                      \
		if (strcmp(got_, want) == 0)                                                       \
			check_passed++;                                                            \
		else                                                                               \
			CHECK_FAIL_("%s after %s: %s, expected %s", expr, after, got_, want);      \
	} while (0)

static void refused(const char *expr, const char *field)
{
	djob_cron_t c;
	djob_error_t e;
	int rc = djob_cron_parse(&c, expr, &e);
	CHECK_INT(rc, DJOB_EINVAL);
	if (rc == DJOB_EINVAL && !strstr(e.message, field))
		CHECK_FAIL_("'%s': message '%s' does not name %s", expr, e.message, field);
}

int main(void)
{
	CHECK_NEXT("* * * * *", "2026-12-05T15:14:50.000Z", 0, "2026-12-05T15:15:00.000Z");
	CHECK_NEXT("* * * * *", "2026-12-05T15:15:00.000Z", 0, "2026-12-05T15:16:00.000Z");
	CHECK_NEXT("*/15 * * * *", "2026-12-05T15:31:00.000Z", 0, "2026-12-05T15:45:00.000Z");
	CHECK_NEXT("0 0 * * *", "2026-12-31T23:59:00.000Z", 0, "2027-01-01T00:00:00.000Z");
	CHECK_NEXT("30 2 1 JAN *", "2026-01-01T02:30:00.000Z", 0, "2027-01-01T02:30:00.000Z");
	CHECK_NEXT("0 9 * * MON-FRI", "2026-12-05T10:00:00.000Z", 0, "2026-12-07T09:00:00.000Z");
	CHECK_NEXT("0 9 * * 1-5", "2026-12-07T09:00:00.000Z", 0, "2026-12-08T09:00:00.000Z");
	CHECK_NEXT("0 0 * * 7", "2026-12-05T00:00:00.000Z", 0, "2026-12-06T00:00:00.000Z");
	CHECK_NEXT("0 0 * * sun", "2026-12-05T00:00:00.000Z", 0, "2026-12-06T00:00:00.000Z");
	CHECK_NEXT("0 0 29 2 *", "2026-03-01T00:00:00.000Z", 0, "2028-02-29T00:00:00.000Z");
	CHECK_NEXT("0 0 31 * *", "2026-04-01T00:00:00.000Z", 0, "2026-05-31T00:00:00.000Z");
	CHECK_NEXT("0 0 30 2 *", "2026-01-01T00:00:00.000Z", 0, "never");
	CHECK_NEXT("5,10-12,50-59/5 * * * *", "2026-06-01T00:11:00.000Z", 0,
	           "2026-06-01T00:12:00.000Z");
	CHECK_NEXT("5,10-12,50-59/5 * * * *", "2026-06-01T00:12:00.000Z", 0,
	           "2026-06-01T00:50:00.000Z");
	CHECK_NEXT("0 12 * JUN,dec *", "2026-07-01T00:00:00.000Z", 0, "2026-12-01T12:00:00.000Z");
	/* Vixie: both days restricted, either matches; one starred, both. */
	CHECK_NEXT("0 0 13 * FRI", "2026-12-01T00:00:00.000Z", 0, "2026-12-04T00:00:00.000Z");
	CHECK_NEXT("0 0 13 * FRI", "2026-12-11T00:00:00.000Z", 0, "2026-12-13T00:00:00.000Z");
	CHECK_NEXT("0 0 */1 * FRI", "2026-12-01T00:00:00.000Z", 0, "2026-12-04T00:00:00.000Z");
	/* Fixed offsets: 09:00 at +05:30 is 03:30 UTC; at -08:00 17:00 UTC. */
	CHECK_NEXT("0 9 * * *", "2026-12-05T04:00:00.000Z", 330, "2026-12-06T03:30:00.000Z");
	CHECK_NEXT("0 9 * * *", "2026-12-05T04:00:00.000Z", -480, "2026-12-05T17:00:00.000Z");
	CHECK_NEXT("0 0 1 * *", "2026-12-31T20:00:00.000Z", 300, "2027-01-31T19:00:00.000Z");

	refused("* * * *", "5 fields");
	refused("* * * * * *", "5 fields");
	refused("", "5 fields");
	refused("60 * * * *", "minute");
	refused("* 24 * * *", "hour");
	refused("* * 0 * *", "day-of-month");
	refused("* * * 13 *", "month");
	refused("* * * FOO *", "month");
	refused("* * * * 8", "day-of-week");
	refused("5-1 * * * *", "minute");
	refused("*/0 * * * *", "minute");
	refused("1,,2 * * * *", "minute");
	refused("1, * * * *", "minute");
	refused("* * * * MONDAY", "day-of-week");

	int off;
	djob_error_t e;
	CHECK_INT(djob_cron_tz_parse("UTC", &off, &e), 0);
	CHECK_INT(off, 0);
	CHECK_INT(djob_cron_tz_parse("+05:30", &off, &e), 0);
	CHECK_INT(off, 330);
	CHECK_INT(djob_cron_tz_parse("-08:00", &off, &e), 0);
	CHECK_INT(off, -480);
	CHECK_INT(djob_cron_tz_parse("Europe/Paris", &off, &e), DJOB_EINVAL);
	CHECK(strstr(e.message, "timezone") != NULL);
	CHECK_INT(djob_cron_tz_parse("+15:00", &off, &e), DJOB_EINVAL);
	CHECK_INT(djob_cron_tz_parse("+05:60", &off, &e), DJOB_EINVAL);
	CHECK_INT(djob_cron_tz_parse("+5:30", &off, &e), DJOB_EINVAL);
	return check_report("unit_cron");
}
