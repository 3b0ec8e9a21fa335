/*
 * djob: version numbers.
 *
 * Thread safety: every function here may be called from any thread.
 */
#ifndef DJOB_VERSION_H
#define DJOB_VERSION_H

#include "common.h"

DJOB_BEGIN_DECLS

#define DJOB_VERSION_MAJOR 0
#define DJOB_VERSION_MINOR 1
#define DJOB_VERSION_PATCH 0
#define DJOB_VERSION_STRING "0.1.0"

/* The version of the library loaded at run time ("0.1.0"). Ownership: static. */
DJOB_EXTERN const char *djob_version(void);

DJOB_END_DECLS

#endif
