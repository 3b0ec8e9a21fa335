/*
 * Cron expressions and their next due time (cron.h). Civil dates come
 * from day counts by Howard Hinnant's algorithms, so no libc time zone
 * state (and no lock) is involved.
 */
#include "cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const months[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                     "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const days[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

typedef struct {
	const char *name;
	int lo, hi;
	const char *const *names; /* names[i] is lo + i */
	int nnames;
} field_t;

static const field_t fields[5] = {
	{"minute", 0, 59, NULL, 0},       {"hour", 0, 23, NULL, 0},
	{"day-of-month", 1, 31, NULL, 0}, {"month", 1, 12, months, 12},
	{"day-of-week", 0, 7, days, 7},
};

/* A number or a name; the position after it, or NULL. */
static const char *value(const field_t *f, const char *p, int *v)
{
	if (isdigit((unsigned char)*p)) {
		long n = 0;
		while (isdigit((unsigned char)*p) && n <= 1000)
			n = n * 10 + (*p++ - '0');
		*v = (int)n;
		return n <= 1000 ? p : NULL;
	}
	for (int i = 0; i < f->nnames; i++)
		if (strncasecmp(p, f->names[i], 3) == 0 && !isalpha((unsigned char)p[3])) {
			*v = f->lo + i;
			return p + 3;
		}
	return NULL;
}

/* One field (the text from p to end) into *bits. */
static int parse_field(const field_t *f, const char *p, const char *end, uint64_t *bits, bool *star)
{
	*bits = 0;
	*star = *p == '*';
	while (p < end) {
		int lo, hi, step = 1;
		if (*p == '*') {
			lo = f->lo;
			hi = f->hi;
			p++;
		} else {
			if (!(p = value(f, p, &lo)))
				return -1;
			hi = lo;
			if (*p == '-' && !(p = value(f, p + 1, &hi)))
				return -1;
		}
		if (*p == '/') {
			const char *q = p + 1;
			if (!isdigit((unsigned char)*q))
				return -1;
			long n = 0;
			while (isdigit((unsigned char)*q) && n <= 1000)
				n = n * 10 + (*q++ - '0');
			if (n < 1 || n > f->hi)
				return -1;
			step = (int)n;
			p = q;
		}
		if (lo < f->lo || hi > f->hi || lo > hi)
			return -1;
		for (int v = lo; v <= hi; v += step)
			*bits |= 1ULL << v;
		if (p < end && *p++ != ',')
			return -1;
		if (p == end && p[-1] == ',')
			return -1;
	}
	return *bits ? 0 : -1;
}

int djob_cron_parse(djob_cron_t *out, const char *expr, djob_error_t *err)
{
	memset(out, 0, sizeof *out);
	if (!expr)
		return djob_set_error(err, DJOB_EINVAL, 0, "cron is required");
	const char *p = expr;
	uint64_t bits[5];
	bool star[5];
	for (int i = 0; i < 5; i++) {
		while (*p == ' ' || *p == '\t')
			p++;
		const char *end = p + strcspn(p, " \t");
		if (end == p)
			return djob_set_error(err, DJOB_EINVAL, 0,
			                      "cron must have 5 fields: minute hour day-of-month "
			                      "month day-of-week");
		if (parse_field(&fields[i], p, end, &bits[i], &star[i]) != 0)
			return djob_set_error(err, DJOB_EINVAL, 0, "cron has a bad %s field",
			                      fields[i].name);
		p = end;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p)
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "cron must have 5 fields: minute hour day-of-month month "
		                      "day-of-week");
	out->minute = bits[0];
	out->hour = (uint32_t)bits[1];
	out->dom = (uint32_t)bits[2];
	out->month = (uint16_t)bits[3];
	out->dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 is Sunday */
	out->dom_star = star[2];
	out->dow_star = star[4];
	return 0;
}

int djob_cron_tz_parse(const char *tz, int *offset_min, djob_error_t *err)
{
	*offset_min = 0;
	if (!tz || strcmp(tz, "UTC") == 0 || strcmp(tz, "Z") == 0)
		return 0;
	int h, m;
	char sign, rest;
	if (strlen(tz) == 6 && sscanf(tz, "%c%2d:%2d%c", &sign, &h, &m, &rest) == 3 &&
	    (sign == '+' || sign == '-') && isdigit((unsigned char)tz[1]) &&
	    isdigit((unsigned char)tz[2]) && isdigit((unsigned char)tz[4]) &&
	    isdigit((unsigned char)tz[5]) && m < 60 && h * 60 + m <= 14 * 60) {
		*offset_min = (sign == '-' ? -1 : 1) * (h * 60 + m);
		return 0;
	}
	return djob_set_error(err, DJOB_EINVAL, 0,
	                      "timezone must be UTC or a fixed offset such as +05:30");
}

/* Days since 1970-01-01 to a civil date, and back (Hinnant). */
static void civil(int64_t z, int *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool day_matches(const djob_cron_t *c, int64_t day, int dom)
{
	int wday = (int)(((day % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
	bool dm = c->dom >> dom & 1, wm = c->dow >> wday & 1;
	if (!c->dom_star && !c->dow_star)
		return dm || wm;
	return dm && wm;
}

int64_t djob_cron_next(const djob_cron_t *c, int64_t after_ms, int offset_min)
{
	/* Local minutes since the epoch, the first one after after_ms. */
	int64_t t = after_ms + (int64_t)offset_min * 60000;
	int64_t min = (t >= 0 ? t / 60000 : (t - 59999) / 60000) + 1;
	int64_t day = min >= 0 ? min / 1440 : (min - 1439) / 1440;
	int64_t last = day + 28 * 366;
	int first_min = (int)(min - day * 1440);
	for (; day <= last; day++, first_min = 0) {
		int y, m, d;
		civil(day, &y, &m, &d);
		if (!(c->month >> m & 1)) {
			/* On to the first day of the next month. */
			day = days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) - 1;
			continue;
		}
		if (!day_matches(c, day, d))
			continue;
		for (int hm = first_min; hm < 1440; hm++) {
			int h = hm / 60, mi = hm % 60;
			if (!(c->hour >> h & 1)) {
				hm = h * 60 + 59;
				continue;
			}
			if (c->minute >> mi & 1)
				return ((day * 1440 + hm) - offset_min) * 60000;
		}
	}
	return -1;
}
