/*
 * Helpers shared by the stack tests: where the dev stack is, unique names per
 * run, and failing loudly. These tests need a running Kafka and MongoDB
 * (scripts/devstack up) and fail, never skip, when they are missing.
 */
#ifndef DJOB_TESTS_STACK_H
#define DJOB_TESTS_STACK_H

#include <stddef.h>
#include <stdint.h>

/* DJOB_KAFKA_BROKERS, default 127.0.0.1:9092. */
const char *stack_kafka_brokers(void);

/* DJOB_MONGO_URI, default mongodb://127.0.0.1:27017/jobsdb. */
const char *stack_mongo_uri(void);

/* "<prefix>-<pid>-<microseconds>" (with '_' instead of '-' when
 * underscores is set), unique per run so reruns never see old data. */
void stack_unique_name(char *buf, size_t size, const char *prefix, int underscores);

/* Monotonic milliseconds. */
int64_t stack_now_ms(void);

/* Print "FAIL <test>: <message>" to stderr and exit 1. */
void stack_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Print "ok <message>" to stdout. */
void stack_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Name of the running test, used in messages. */
extern const char *stack_test_name;

#define STACK_CHECK(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond))                                                                       \
			stack_fail(__VA_ARGS__);                                                   \
	} while (0)

#endif
