/*
 * A tiny check harness for the unit tests: CHECK macros count passes and
 * failures and print file:line for each failure; check_report() prints the
 * totals and gives main's exit status.
 */
#ifndef DJOB_TEST_CHECK_H
#define DJOB_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed;
static int check_failed;

#define CHECK_FAIL_(...)                                                                           \
	do {                                                                                       \
		check_failed++;                                                                    \
		fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                    \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
	} while (0)

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (cond)                                                                          \
			check_passed++;                                                            \
		else                                                                               \
			CHECK_FAIL_("CHECK(%s) failed", #cond);                                    \
	} while (0)

#define CHECK_INT(actual, expected)                                                                \
	do {                                                                                       \
		long long a_ = (long long)(actual);                                                \
		long long e_ = (long long)(expected);                                              \
		if (a_ == e_)                                                                      \
			check_passed++;                                                            \
		else                                                                               \
			CHECK_FAIL_("%s is %lld, expected %lld", #actual, a_, e_);                 \
	} while (0)

#define CHECK_STR(actual, expected)                                                                \
	do {                                                                                       \
		const char *a_ = (actual);                                                         \
		const char *e_ = (expected);                                                       \
		if (a_ != NULL && e_ != NULL && strcmp(a_, e_) == 0)                               \
			check_passed++;                                                            \
		else                                                                               \
			CHECK_FAIL_("%s is \"%s\", expected \"%s\"", #actual, a_ ? a_ : "(null)",  \
			            e_ ? e_ : "(null)");                                           \
	} while (0)

/* Run one test function, naming it when it fails. */
#define RUN(test)                                                                                  \
	do {                                                                                       \
		int before_ = check_failed;                                                        \
		test();                                                                            \
		if (check_failed != before_)                                                       \
			fprintf(stderr, "FAIL %s\n", #test);                                       \
	} while (0)

/* Print "<name>: N passed, M failed" and return main's exit status. */
static inline int check_report(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
	fflush(stdout);
	return check_failed == 0 ? 0 : 1;
}

#endif
