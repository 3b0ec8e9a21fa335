/*
 * Clocks, ISO-8601 dates, UUIDs, strings.
 */
#include "djob_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int64_t djob_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t djob_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#ifdef DJOB_FAULT_INJECTION
bool djob_fault(const char *name)
{
	const char *f = getenv("DJOB_FAULT");
	return f && strcmp(f, name) == 0;
}
#endif

/* Write v as exactly n decimal digits, zero-padded. */
static void put_digits(char *p, int v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

void djob_format_iso(int64_t ms, char out[32])
{
	/* Floor division so that dates before 1970 keep a positive millisecond part. */
	int64_t sec = ms / 1000;
	int64_t rem = ms % 1000;
	time_t t;
	struct tm tm;

	if (rem < 0) {
		rem += 1000;
		sec -= 1;
	}
	t = (time_t)sec;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
		/* Outside what ISO-8601's four-digit years can say. */
		memcpy(out, sec < 0 ? "0000-01-01T00:00:00.000Z" : "9999-12-31T23:59:59.999Z", 25);
		return;
	}
	put_digits(out, tm.tm_year + 1900, 4);
	out[4] = '-';
	put_digits(out + 5, tm.tm_mon + 1, 2);
	out[7] = '-';
	put_digits(out + 8, tm.tm_mday, 2);
	out[10] = 'T';
	put_digits(out + 11, tm.tm_hour, 2);
	out[13] = ':';
	put_digits(out + 14, tm.tm_min, 2);
	out[16] = ':';
	put_digits(out + 17, tm.tm_sec, 2);
	out[19] = '.';
	put_digits(out + 20, (int)rem, 3);
	out[23] = 'Z';
	out[24] = '\0';
}

/* Read exactly n decimal digits at *p into *value and advance. */
static int read_digits(const char **p, int n, int *value)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*value = v;
	return 0;
}

static int days_in_month(int year, int month)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	return month == 2 && leap ? 29 : days[month - 1];
}

int djob_parse_iso(const char *text, int64_t *ms_out)
{
	const char *p = text;
	int year, month, day, hour, minute, second;
	int frac_ms = 0;
	int offset_min = 0;
	struct tm tm;
	time_t t;

	if (text == NULL || ms_out == NULL)
		return DJOB_EINVAL;
	if (read_digits(&p, 4, &year) || *p++ != '-' || read_digits(&p, 2, &month) || *p++ != '-' ||
	    read_digits(&p, 2, &day) || *p++ != 'T' || read_digits(&p, 2, &hour) || *p++ != ':' ||
	    read_digits(&p, 2, &minute) || *p++ != ':' || read_digits(&p, 2, &second))
		return DJOB_EINVAL;
	if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
	    minute > 59 || second > 59)
		return DJOB_EINVAL;
	if (*p == '.') {
		int digits = 0;
		p++;
		while (*p >= '0' && *p <= '9') {
			/* Keep milliseconds; finer digits are truncated. */
			if (digits < 3)
				frac_ms = frac_ms * 10 + (*p - '0');
			digits++;
			p++;
		}
		if (digits < 1 || digits > 9)
			return DJOB_EINVAL;
		for (int i = digits; i < 3; i++)
			frac_ms *= 10;
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int oh, om;
		p++;
		if (read_digits(&p, 2, &oh) || *p++ != ':' || read_digits(&p, 2, &om))
			return DJOB_EINVAL;
		if (oh > 23 || om > 59)
			return DJOB_EINVAL;
		offset_min = sign * (oh * 60 + om);
	} else {
		return DJOB_EINVAL;
	}
	if (*p != '\0')
		return DJOB_EINVAL;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = second;
	t = timegm(&tm);
	*ms_out = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + frac_ms;
	return 0;
}

/* Fill buf with random bytes; never leaves it uninitialised. */
static void random_bytes(unsigned char *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		got += (size_t)n;
	}
	if (got < len) {
		int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			while (got < len) {
				ssize_t n = read(fd, buf + got, len - got);
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0)
					break;
				got += (size_t)n;
			}
			close(fd);
		}
	}
	if (got < len) {
		/* Last resort: no kernel randomness at all. Unique enough, not secret. */
		static atomic_uint_fast64_t counter;
		uint64_t x = (uint64_t)djob_now_ms() ^ ((uint64_t)getpid() << 32) ^
		             (uint64_t)atomic_fetch_add(&counter, 0x9E3779B97F4A7C15ull) ^
		             (uint64_t)djob_mono_ms() << 20;
		for (; got < len; got++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[got] = (unsigned char)x;
		}
	}
}

void djob_uuid_v4(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	char *o = out;

	random_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0F) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* variant 10xx */
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 0x0F];
	}
	*o = '\0';
}

char *djob_strdup(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}
