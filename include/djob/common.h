/*
 * djob: common definitions shared by every public header.
 *
 * Thread safety: this header only declares types; see each module's header.
 */
#ifndef DJOB_COMMON_H
#define DJOB_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(DJOB_BUILDING_LIBRARY)
#define DJOB_EXTERN __attribute__((visibility("default")))
#else
#define DJOB_EXTERN
#endif

#ifdef __cplusplus
#define DJOB_BEGIN_DECLS extern "C" {
#define DJOB_END_DECLS }
#else
#define DJOB_BEGIN_DECLS
#define DJOB_END_DECLS
#endif

DJOB_BEGIN_DECLS

/* Opaque types. */
typedef struct djob_config_s djob_config_t;
typedef struct djob_client_s djob_client_t;
typedef struct djob_worker_s djob_worker_t;
typedef struct djob_job_s djob_job_t;
typedef struct djob_sink_s djob_sink_t;

/* Release memory that the library allocated and handed over (strings, JSON
 * documents). NULL is a no-op. */
DJOB_EXTERN void djob_free(void *ptr);

DJOB_END_DECLS

#endif
