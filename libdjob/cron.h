/*
 * Cron expressions (5 fields: minute hour day-of-month month day-of-week)
 * and their next due time, in UTC or a fixed offset. Not installed.
 *
 * Thread safety: a parsed expression is plain data; every function is
 * reentrant (no libc time zone state is used).
 */
#ifndef DJOB_CRON_H
#define DJOB_CRON_H

#include "djob_private.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
	uint64_t minute;         /* bits 0-59 */
	uint32_t hour;           /* bits 0-23 */
	uint32_t dom;            /* bits 1-31 */
	uint16_t month;          /* bits 1-12 */
	uint8_t dow;             /* bits 0-6, Sunday 0 (7 is read as 0) */
	bool dom_star, dow_star; /* the field began with '*' (Vixie cron) */
} djob_cron_t;

/* Parse `expr`: lists, ranges, steps (a-b/n, * /n), `*`, names JAN-DEC and
 * SUN-SAT (any case). 0, or DJOB_EINVAL with err naming the bad field. */
int djob_cron_parse(djob_cron_t *out, const char *expr, djob_error_t *err);

/* A time zone: "UTC", "Z" or a fixed offset "+HH:MM"/"-HH:MM" (up to
 * 14:00); *offset_min gets minutes east of UTC. IANA names are refused:
 * 0, or DJOB_EINVAL with err set. */
int djob_cron_tz_parse(const char *tz, int *offset_min, djob_error_t *err);

/* The first due time strictly after `after_ms` (ms since the epoch, UTC)
 * in the zone `offset_min`, or -1 when none comes within 28 years (an
 * expression such as "0 0 30 2 *"). Where day-of-month and day-of-week
 * are both restricted, a day matching either is due (Vixie cron). */
int64_t djob_cron_next(const djob_cron_t *c, int64_t after_ms, int offset_min);

#endif
