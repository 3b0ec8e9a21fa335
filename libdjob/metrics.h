/*
 * A small Prometheus registry: counters, gauges and histograms keyed by
 * name and a label set, rendered in the text exposition format. Not
 * installed.
 *
 * Thread safety: every function may be called from any thread (one mutex).
 */
#ifndef DJOB_METRICS_H
#define DJOB_METRICS_H

#include "djob_private.h"

typedef struct djob_metrics_s djob_metrics_t;

typedef enum {
	DJOB_METRIC_COUNTER,
	DJOB_METRIC_GAUGE,
	DJOB_METRIC_HISTOGRAM
} djob_metric_kind_t;

/* NULL on allocation failure. */
djob_metrics_t *djob_metrics_new(void);
void djob_metrics_free(djob_metrics_t *m);

/* Declare a family (HELP and TYPE lines). Families are rendered in the
 * order declared; series of undeclared names are ignored. */
int djob_metrics_declare(djob_metrics_t *m, const char *name, djob_metric_kind_t kind,
                         const char *help);

/* `labels` is the inside of the braces, already quoted
 * (`type="compute",status="completed"`), or "" for none. */
void djob_metrics_add(djob_metrics_t *m, const char *name, const char *labels, double delta);
void djob_metrics_set(djob_metrics_t *m, const char *name, const char *labels, double value);
void djob_metrics_observe(djob_metrics_t *m, const char *name, const char *labels, double value);

/* The text exposition of every family. Ownership: free() the result. */
char *djob_metrics_render(djob_metrics_t *m);

/* Escape a label value (backslash, quote, newline) into out. */
void djob_metrics_escape(const char *value, char *out, size_t size);

/* The sum of "consumer_lag" over the partitions of a librdkafka statistics
 * JSON document (partitions with an unknown lag are left out); -1 when no
 * partition reports one. */
long long djob_kafka_stats_consumer_lag(const char *json, size_t len);

#endif
