/*
 * djob: error codes and the error record.
 *
 * Every fallible function returns 0 or a negative DJOB_E* code and takes an
 * optional djob_error_t * as its last argument (NULL when the caller does not
 * want the details).
 *
 * Thread safety: djob_strerror may be called from any thread; a djob_error_t
 * belongs to the caller that allocated it (usually on the stack).
 */
#ifndef DJOB_ERROR_H
#define DJOB_ERROR_H

#include "common.h"

DJOB_BEGIN_DECLS

typedef enum {
	DJOB_OK = 0,
	DJOB_EINVAL = -1,      /* bad argument or bad input (4xx) */
	DJOB_ENOTFOUND = -2,   /* no such job */
	DJOB_ECONFLICT = -3,   /* illegal transition or stale lease */
	DJOB_ETIMEOUT = -4,    /* a wait ran out */
	DJOB_EKAFKA = -5,      /* Kafka failed or is unreachable */
	DJOB_EMONGO = -6,      /* MongoDB failed or is unreachable */
	DJOB_ENOMEM = -7,      /* out of memory */
	DJOB_ESTATE = -8,      /* the object is not in a state to do that */
	DJOB_EHTTP = -9,       /* the API answered with an error or is unreachable */
	DJOB_ETOOBIG = -10,    /* input over a configured size limit */
	DJOB_EUNAUTHORIZED = -11, /* missing or wrong token */
	DJOB_EFORBIDDEN = -12, /* token lacks the role */
	DJOB_EINTERNAL = -13   /* a bug or an unexpected condition */
} djob_code_t;

#define DJOB_ERROR_MESSAGE_MAX 256

typedef struct {
	int code;      /* a djob_code_t */
	int retriable; /* non-zero when trying again later may succeed */
	char message[DJOB_ERROR_MESSAGE_MAX]; /* one sentence, no trailing period */
} djob_error_t;

/* Static text for a code ("Job not found"). Ownership: static. */
DJOB_EXTERN const char *djob_strerror(int code);

/* Suggested HTTP status for a code (EINVAL -> 400, ENOTFOUND -> 404, ...). */
DJOB_EXTERN int djob_error_http_status(int code);

DJOB_END_DECLS

#endif
