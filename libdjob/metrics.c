/*
 * The Prometheus registry behind GET /metrics of both daemons. Series are
 * few (types x statuses, routes x codes), so a list searched linearly under
 * one mutex is enough.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Histogram buckets in seconds: handler and request durations. */
static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                 0.5,   1,     2.5,  5,     10,   30,  60};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct series_s {
	struct series_s *next;
	char *labels;
	double value; /* counter or gauge; histogram: sum */
	unsigned long long count;
	unsigned long long bucket[N_BUCKETS];
} series_t;

typedef struct family_s {
	struct family_s *next;
	char *name;
	char *help;
	djob_metric_kind_t kind;
	series_t *series, *series_tail;
} family_t;

struct djob_metrics_s {
	pthread_mutex_t mu;
	family_t *head, *tail;
};

djob_metrics_t *djob_metrics_new(void)
{
	djob_metrics_t *m = calloc(1, sizeof *m);
	if (m)
		pthread_mutex_init(&m->mu, NULL);
	return m;
}

void djob_metrics_free(djob_metrics_t *m)
{
	if (!m)
		return;
	for (family_t *f = m->head, *fn; f; f = fn) {
		fn = f->next;
		for (series_t *s = f->series, *sn; s; s = sn) {
			sn = s->next;
			free(s->labels);
			free(s);
		}
		free(f->name);
		free(f->help);
		free(f);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static family_t *find_family(djob_metrics_t *m, const char *name)
{
	for (family_t *f = m->head; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

int djob_metrics_declare(djob_metrics_t *m, const char *name, djob_metric_kind_t kind,
                         const char *help)
{
	pthread_mutex_lock(&m->mu);
	int rc = 0;
	if (!find_family(m, name)) {
		family_t *f = calloc(1, sizeof *f);
		if (f && (f->name = djob_strdup(name)) && (f->help = djob_strdup(help))) {
			f->kind = kind;
			if (m->tail)
				m->tail->next = f;
			else
				m->head = f;
			m->tail = f;
		} else {
			if (f)
				free(f->name);
			free(f);
			rc = DJOB_ENOMEM;
		}
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

/* The series of (name, labels), created on first use. Caller holds mu. */
static series_t *find_series(djob_metrics_t *m, const char *name, const char *labels,
                             djob_metric_kind_t *kind)
{
	family_t *f = find_family(m, name);
	if (!f)
		return NULL;
	*kind = f->kind;
	for (series_t *s = f->series; s; s = s->next)
		if (strcmp(s->labels, labels) == 0)
			return s;
	series_t *s = calloc(1, sizeof *s);
	if (!s || !(s->labels = djob_strdup(labels))) {
		free(s);
		return NULL;
	}
	if (f->series_tail)
		f->series_tail->next = s;
	else
		f->series = s;
	f->series_tail = s;
	return s;
}

void djob_metrics_add(djob_metrics_t *m, const char *name, const char *labels, double delta)
{
	djob_metric_kind_t kind;
	pthread_mutex_lock(&m->mu);
	series_t *s = find_series(m, name, labels ? labels : "", &kind);
	if (s && kind != DJOB_METRIC_HISTOGRAM)
		s->value += delta;
	pthread_mutex_unlock(&m->mu);
}

void djob_metrics_set(djob_metrics_t *m, const char *name, const char *labels, double value)
{
	djob_metric_kind_t kind;
	pthread_mutex_lock(&m->mu);
	series_t *s = find_series(m, name, labels ? labels : "", &kind);
	/* A counter may be set too: one kept elsewhere, mirrored here. */
	if (s && kind != DJOB_METRIC_HISTOGRAM)
		s->value = value;
	pthread_mutex_unlock(&m->mu);
}

void djob_metrics_observe(djob_metrics_t *m, const char *name, const char *labels, double value)
{
	djob_metric_kind_t kind;
	pthread_mutex_lock(&m->mu);
	series_t *s = find_series(m, name, labels ? labels : "", &kind);
	if (s && kind == DJOB_METRIC_HISTOGRAM) {
		s->value += value;
		s->count++;
		for (size_t i = 0; i < N_BUCKETS; i++)
			if (value <= buckets[i])
				s->bucket[i]++;
	}
	pthread_mutex_unlock(&m->mu);
}

typedef struct {
	char *buf;
	size_t len, cap;
	bool oom;
} out_t;

static void outf(out_t *o, const char *fmt, ...) DJOB_ATTR_PRINTF(2, 3);

static void outf(out_t *o, const char *fmt, ...)
{
	if (o->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->oom = true;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap * 2 + (size_t)n;
		char *b = realloc(o->buf, cap);
		if (!b) {
			o->oom = true;
			return;
		}
		o->buf = b;
		o->cap = cap;
	}
}

/* `{labels,extra}` or `{extra}` or `{labels}` or "". */
static void label_block(out_t *o, const char *labels, const char *extra)
{
	bool a = labels && *labels, b = extra && *extra;
	if (!a && !b)
		return;
	outf(o, "{%s%s%s}", a ? labels : "", a && b ? "," : "", b ? extra : "");
}

char *djob_metrics_render(djob_metrics_t *m)
{
	out_t o = {malloc(4096), 0, 4096, false};
	if (!o.buf)
		return NULL;
	o.buf[0] = '\0';
	static const char *types[] = {"counter", "gauge", "histogram"};
	pthread_mutex_lock(&m->mu);
	for (family_t *f = m->head; f; f = f->next) {
		outf(&o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->kind]);
		for (series_t *s = f->series; s; s = s->next) {
			if (f->kind != DJOB_METRIC_HISTOGRAM) {
				outf(&o, "%s", f->name);
				label_block(&o, s->labels, NULL);
				outf(&o, " %.17g\n", s->value);
				continue;
			}
			char le[32];
			for (size_t i = 0; i < N_BUCKETS; i++) {
				snprintf(le, sizeof le, "le=\"%g\"", buckets[i]);
				outf(&o, "%s_bucket", f->name);
				label_block(&o, s->labels, le);
				outf(&o, " %llu\n", s->bucket[i]);
			}
			outf(&o, "%s_bucket", f->name);
			label_block(&o, s->labels, "le=\"+Inf\"");
			outf(&o, " %llu\n%s_sum", s->count, f->name);
			label_block(&o, s->labels, NULL);
			outf(&o, " %.17g\n%s_count", s->value, f->name);
			label_block(&o, s->labels, NULL);
			outf(&o, " %llu\n", s->count);
		}
	}
	pthread_mutex_unlock(&m->mu);
	if (o.oom) {
		free(o.buf);
		return NULL;
	}
	return o.buf;
}

void djob_metrics_escape(const char *value, char *out, size_t size)
{
	size_t n = 0;
	for (const char *p = value; *p && n + 3 < size; p++) {
		if (*p == '\\' || *p == '"') {
			out[n++] = '\\';
			out[n++] = *p;
		} else if (*p == '\n') {
			out[n++] = '\\';
			out[n++] = 'n';
		} else {
			out[n++] = *p;
		}
	}
	if (size)
		out[n < size ? n : size - 1] = '\0';
}

long long djob_kafka_stats_consumer_lag(const char *json, size_t len)
{
	cJSON *doc = cJSON_ParseWithLength(json, len);
	long long lag = -1;
	const cJSON *topics = cJSON_GetObjectItemCaseSensitive(doc, "topics");
	const cJSON *t, *p;
	cJSON_ArrayForEach(t, topics)
	{
		const cJSON *parts = cJSON_GetObjectItemCaseSensitive(t, "partitions");
		cJSON_ArrayForEach(p, parts)
		{
			const cJSON *l = cJSON_GetObjectItemCaseSensitive(p, "consumer_lag");
			/* Partition -1 is librdkafka's internal UA partition. */
			if (strcmp(p->string ? p->string : "", "-1") == 0 || !cJSON_IsNumber(l) ||
			    l->valuedouble < 0)
				continue;
			lag = (lag < 0 ? 0 : lag) + (long long)l->valuedouble;
		}
	}
	cJSON_Delete(doc);
	return lag;
}
