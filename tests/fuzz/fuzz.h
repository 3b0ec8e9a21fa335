/*
 * What the fuzz targets share: libFuzzer's entry point and an assertion
 * that aborts (libFuzzer then keeps the input as a crash).
 */
#ifndef DJOB_FUZZ_H
#define DJOB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: FUZZ_ASSERT(%s) failed\n", __FILE__, __LINE__,     \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The input as a NUL-terminated string (cut at its first NUL, as a C
 * caller would see it). Ownership: free(). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	FUZZ_ASSERT(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Are the checks of issue 13's JSON layer (libdjob/json.c) on? Compiled in
 * once it is there (tests/fuzz/meson.build defines DJOB_FUZZ_JSON_CHECKS);
 * before, DJOB_FUZZ_JSON_CHECKS=1 in the environment asks for them. */
static inline int fuzz_json_checks(void)
{
#ifdef DJOB_FUZZ_JSON_CHECKS
	return 1;
#else
	static int on = -1;
	if (on < 0) {
		const char *v = getenv("DJOB_FUZZ_JSON_CHECKS");
		on = v != NULL && strcmp(v, "1") == 0;
	}
	return on;
#endif
}

#endif
