/*
 * djob: logging.
 *
 * Thread safety: the log callback is called from any thread, including
 * librdkafka's and libmongoc's internal threads. It must not call back into
 * the client or worker that logs.
 */
#ifndef DJOB_LOG_H
#define DJOB_LOG_H

#include "common.h"

DJOB_BEGIN_DECLS

typedef enum {
	DJOB_LOG_ERROR = 0,
	DJOB_LOG_WARNING = 1,
	DJOB_LOG_INFO = 2,
	DJOB_LOG_DEBUG = 3
} djob_log_level_t;

/* Called once per log event. `component` names the source ("worker",
 * "kafka", "mongo", ...). `message` is only valid during the call. */
typedef void (*djob_log_fn)(djob_log_level_t level, const char *component,
                            const char *message, void *opaque);

/* A ready-made callback: one JSON object per line on stderr
 * ({"ts":"…","level":"info","component":"worker","msg":"…"}). */
DJOB_EXTERN void djob_log_json_stderr(djob_log_level_t level, const char *component,
                                      const char *message, void *opaque);

/* Name of a level ("error", "warning", "info", "debug"). Ownership: static. */
DJOB_EXTERN const char *djob_log_level_name(djob_log_level_t level);

DJOB_END_DECLS

#endif
