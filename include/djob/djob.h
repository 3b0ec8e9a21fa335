/*
 * djob: the one header users include.
 *
 * Thread safety: see each module's header; threads.md in docs/ summarises.
 */
#ifndef DJOB_DJOB_H
#define DJOB_DJOB_H

#include "common.h"
#include "version.h"
#include "error.h"
#include "log.h"
#include "config.h"
#include "job.h"
#include "client.h"
#include "worker.h"
#include "server.h"
#include "scheduler.h"

#endif
