/* Status sinks: the record behind djob_sink_t. Not installed. */
#ifndef DJOB_SINK_PRIVATE_H
#define DJOB_SINK_PRIVATE_H

#include "djob_private.h"

struct djob_sink_s {
	djob_sink_ops_t ops;
	void *opaque;
};

#endif
