#include "stack.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

const char *stack_test_name = "stack test";

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v && *v ? v : fallback;
}

const char *stack_kafka_brokers(void)
{
	return env_or("DJOB_KAFKA_BROKERS", "127.0.0.1:9092");
}

const char *stack_mongo_uri(void)
{
	return env_or("DJOB_MONGO_URI", "mongodb://127.0.0.1:27017/jobsdb");
}

void stack_unique_name(char *buf, size_t size, const char *prefix, int underscores)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	snprintf(buf, size, "%s-%ld-%lld", prefix, (long)getpid(),
	         (long long)tv.tv_sec * 1000000 + tv.tv_usec);
	if (underscores)
		for (char *p = buf; *p; p++)
			if (*p == '-')
				*p = '_';
}

int64_t stack_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void stack_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL %s: ", stack_test_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void stack_ok(const char *fmt, ...)
{
	va_list ap;

	printf("ok ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}
