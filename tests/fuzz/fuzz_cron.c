/*
 * Cron expressions (libdjob/cron.c): any input is parsed or refused with a
 * message; a parsed one has bits only in each field's range, and its next
 * due time (UTC and the widest offsets) is minute-aligned, after the start
 * and itself due: the next time after (due - 1 minute) is due again.
 */
#include "fuzz.h"

#include "cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *expr = fuzz_cstr(data, size);
	djob_cron_t c;
	djob_error_t err;
	memset(&err, 0, sizeof err);
	int rc = djob_cron_parse(&c, expr, &err);
	if (rc != 0) {
		FUZZ_ASSERT(rc == DJOB_EINVAL && err.message[0] != '\0');
		free(expr);
		return 0;
	}
	FUZZ_ASSERT(c.minute && !(c.minute >> 60));
	FUZZ_ASSERT(c.hour && !(c.hour >> 24));
	FUZZ_ASSERT(c.dom && !(c.dom & 1));
	FUZZ_ASSERT(c.month && !(c.month & 1) && !(c.month >> 13));
	FUZZ_ASSERT(c.dow && !(c.dow >> 7));
	static const int offsets[] = {0, 14 * 60, -14 * 60};
	const int64_t start = 1796483690123LL; /* a fixed start, not minute-aligned */
	for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
		int64_t t = djob_cron_next(&c, start, offsets[i]);
		if (t < 0)
			continue;
		FUZZ_ASSERT(t > start && t % 60000 == 0);
		FUZZ_ASSERT(djob_cron_next(&c, t - 60000, offsets[i]) == t);
	}
	free(expr);
	return 0;
}
