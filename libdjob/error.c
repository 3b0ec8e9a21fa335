/*
 * Error texts, HTTP mapping, the error record and djob_free.
 */
#include "djob_private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *djob_strerror(int code)
{
	switch (code) {
	case DJOB_OK:
		return "Success";
	case DJOB_EINVAL:
		return "Invalid argument";
	case DJOB_ENOTFOUND:
		return "Job not found";
	case DJOB_ECONFLICT:
		return "Conflict with the job's current state";
	case DJOB_ETIMEOUT:
		return "Timed out";
	case DJOB_EKAFKA:
		return "Kafka failed or is unreachable";
	case DJOB_EMONGO:
		return "MongoDB failed or is unreachable";
	case DJOB_ENOMEM:
		return "Out of memory";
	case DJOB_ESTATE:
		return "Not in a state to do that";
	case DJOB_EHTTP:
		return "The API failed or is unreachable";
	case DJOB_ETOOBIG:
		return "Input too large";
	case DJOB_EUNAUTHORIZED:
		return "Missing or invalid token";
	case DJOB_EFORBIDDEN:
		return "Token lacks the required role";
	case DJOB_EINTERNAL:
		return "Internal error";
	default:
		return "Unknown error";
	}
}

int djob_error_http_status(int code)
{
	switch (code) {
	case DJOB_OK:
		return 200;
	case DJOB_EINVAL:
		return 400;
	case DJOB_EUNAUTHORIZED:
		return 401;
	case DJOB_EFORBIDDEN:
		return 403;
	case DJOB_ENOTFOUND:
		return 404;
	case DJOB_ECONFLICT:
	case DJOB_ESTATE:
		return 409;
	case DJOB_ETOOBIG:
		return 413;
	case DJOB_EHTTP:
		return 502;
	case DJOB_EKAFKA:
	case DJOB_EMONGO:
		return 503;
	case DJOB_ETIMEOUT:
		return 504;
	case DJOB_ENOMEM:
	case DJOB_EINTERNAL:
	default:
		return 500;
	}
}

int djob_set_error(djob_error_t *err, int code, int retriable, const char *fmt, ...)
{
	if (err == NULL)
		return code;
	err->code = code;
	err->retriable = retriable;
	if (fmt == NULL) {
		snprintf(err->message, sizeof(err->message), "%s", djob_strerror(code));
	} else {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return code;
}

void djob_free(void *ptr)
{
	free(ptr);
}

const char *djob_version(void)
{
	return DJOB_VERSION_STRING;
}
