/*
 * djob_bench: the load generator. It submits N compute jobs through libdjob
 * (djob_client_submit) or through djob-api (POST /jobs over keep-alive
 * HTTP/1.1 connections), waits until the running djob-worker(s) have
 * finished them all, and prints one JSON line: end-to-end jobs/s and
 * submit-to-completed latency p50/p90/p99.
 *
 *   djob_bench lib|http [-n N] [-t THREADS] [-r RATE] [-p API_PORT] [-W WORKER_PORT]
 *
 * The wait: with -W, until the worker's /metrics (djob_jobs_total,
 * completed and failed) has counted N more jobs, which costs MongoDB
 * nothing while the clock runs; without it, until no job of the
 * collection (the phase's own) is open, asked with three list calls every
 * 250 ms. Then every job is read by id for its finishedAt.
 *
 * -r 0 (default) is a closed loop: THREADS submitters as fast as they go
 * (the maximum). -r RATE is an open loop: job i is due at start + i/RATE s,
 * and its latency counts from that due time (a late submitter does not
 * hide queueing). Latency ends at the job's finishedAt (written by the
 * worker; same host clock). Throughput is N over the time from the first
 * submission to the last finishedAt. Configuration from the DJOB_*
 * variables (collection, topic prefix: the same as the daemons').
 */
#define _GNU_SOURCE /* strcasestr */
#include <djob/djob.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int n_jobs = 500, threads = 16, api_port = 3000, worker_port;
static double rate;
static bool via_http;
static djob_client_t *client;
static char (*ids)[37];
static int64_t *due_ms;
static atomic_int next_job;
static atomic_long errors;
static int64_t start_ms;
static double start_mono;
static char run_tag[32];

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "2025-04-09T19:16:43.090Z" -> ms since the epoch, or -1. */
static int64_t parse_iso(const char *s)
{
	struct tm tm = {0};
	int ms = 0;
	if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	                 &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

/* ---- a minimal HTTP/1.1 client (keep-alive, Content-Length bodies) ---- */

typedef struct {
	int fd, port;
	char buf[65536];
	size_t len;
} conn_t;

static int http_connect(conn_t *c)
{
	c->len = 0;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

/* METHOD path with body (NULL: none); *status and the response body
 * (NUL-terminated, in c->buf) on success. */
static int http_request(conn_t *c, const char *method, const char *path, const char *body,
                        int *status, const char **resp)
{
	char req[1024];
	int n = body ? snprintf(req, sizeof req,
	                        "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
	                        "application/json\r\nContent-Length: %zu\r\n\r\n%s",
	                        method, path, strlen(body), body)
	             : snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
	                        method, path);
	/* civetweb closes idle keep-alive connections (keep_alive_timeout_ms):
	 * a reused connection that fails is retried once on a new one. */
	bool fresh = c->fd < 0;
again:
	if (c->fd < 0 && http_connect(c) != 0)
		return -1;
	if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		goto fail;
	c->len = 0;
	char *hdr_end = NULL;
	long clen = -1;
	for (;;) {
		ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
		if (r <= 0)
			goto fail;
		c->len += (size_t)r;
		c->buf[c->len] = '\0';
		if (!hdr_end && (hdr_end = strstr(c->buf, "\r\n\r\n"))) {
			if (sscanf(c->buf, "HTTP/1.%*d %d", status) != 1)
				goto fail;
			const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
			if (!cl || cl > hdr_end)
				goto fail; /* only Content-Length framing is expected */
			clen = atol(cl + 17);
		}
		if (hdr_end && c->len >= (size_t)(hdr_end + 4 - c->buf) + (size_t)clen)
			break;
		if (c->len >= sizeof c->buf - 1)
			goto fail;
	}
	*resp = hdr_end + 4;
	return 0;
fail:
	close(c->fd);
	c->fd = -1;
	if (!fresh) {
		fresh = true;
		goto again;
	}
	return -1;
}

/* Jobs the worker has finished (djob_jobs_total, completed and failed),
 * or -1 when its /metrics cannot be read. */
static long worker_finished(conn_t *c)
{
	int status = 0;
	const char *resp;
	if (http_request(c, "GET", "/metrics", NULL, &status, &resp) != 0 || status != 200)
		return -1;
	long n = 0;
	for (const char *l = resp; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, "djob_jobs_total{", 16) != 0)
			continue;
		const char *end = strchr(l, '}'), *nl = strchr(l, '\n');
		if (!end || (nl && end > nl))
			continue;
		const char *st = strstr(l, "status=\"");
		if (st && st < end &&
		    (strncmp(st + 8, "completed\"", 10) == 0 ||
		     strncmp(st + 8, "failed\"", 7) == 0))
			n += atol(end + 1);
	}
	return n;
}

/* ---- submitters ---- */

static void *submitter(void *arg)
{
	(void)arg;
	conn_t *c = via_http ? calloc(1, sizeof *c) : NULL;
	if (c) {
		c->fd = -1;
		c->port = api_port;
	}
	for (;;) {
		int i = atomic_fetch_add(&next_job, 1);
		if (i >= n_jobs)
			break;
		if (rate > 0) {
			double due = start_mono + (double)i / rate;
			double wait = due - mono_s();
			if (wait > 0) {
				struct timespec ts = {(time_t)wait,
				                      (long)((wait - (double)(time_t)wait) * 1e9)};
				nanosleep(&ts, NULL);
			}
			due_ms[i] = start_ms + (int64_t)((double)i * 1000.0 / rate);
		} else {
			due_ms[i] = wall_ms();
		}
		char payload[96];
		snprintf(payload, sizeof payload, "{\"input\":\"bench-%s-%d\"}", run_tag, i);
		if (!via_http) {
			char *id = NULL;
			djob_error_t e;
			if (djob_client_submit(&id, client, "compute", payload, strlen(payload),
			                       NULL, &e) == 0) {
				snprintf(ids[i], 37, "%s", id);
				djob_free(id);
			} else {
				atomic_fetch_add(&errors, 1);
				fprintf(stderr, "djob_bench: submit: %s\n", e.message);
			}
			continue;
		}
		char body[160];
		snprintf(body, sizeof body, "{\"type\":\"compute\",\"payload\":%s}", payload);
		int status = 0;
		const char *resp = NULL;
		const char *p;
		if (http_request(c, "POST", "/jobs", body, &status, &resp) == 0 && status == 201 &&
		    (p = strstr(resp, "\"jobId\":\""))) {
			snprintf(ids[i], 37, "%.36s", p + 9);
		} else {
			atomic_fetch_add(&errors, 1);
			fprintf(stderr, "djob_bench: POST /jobs: status %d %s\n", status,
			        resp ? resp : "(no answer)");
		}
	}
	if (c && c->fd >= 0)
		close(c->fd);
	free(c);
	return NULL;
}

/* ---- the wait, and the jobs' finishedAt ---- */

static int64_t *fin_ms; /* finishedAt of job i; -1: failed or cancelled */
static atomic_int next_read;

/* Until the worker has counted n_jobs more finished jobs than `before`. */
static void wait_worker(long before)
{
	conn_t *c = calloc(1, sizeof *c);
	c->fd = -1;
	c->port = worker_port;
	for (double until = mono_s() + 300;;) {
		long n = worker_finished(c);
		if (n >= 0 && n - before >= n_jobs)
			break;
		if (mono_s() > until) {
			atomic_fetch_add(&errors, 1);
			fprintf(stderr, "djob_bench: jobs still open after 300 s\n");
			break;
		}
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* Until no job of the collection (the phase's own) is queued, processing
 * or scheduled: a few list calls every 250 ms. */
static void wait_list(void)
{
	const char *open_states[] = {"queued", "processing", "scheduled"};
	djob_error_t e;
	for (double until = mono_s() + 300;;) {
		bool pending = false;
		for (size_t k = 0; k < 3 && !pending; k++) {
			char *page = NULL;
			if (djob_client_list(&page, client, open_states[k], NULL, 1, NULL, &e) !=
			    0) {
				fprintf(stderr, "djob_bench: list: %s\n", e.message);
				pending = true;
				break;
			}
			cJSON *j = cJSON_Parse(page);
			pending =
				cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "jobs")) > 0;
			cJSON_Delete(j);
			djob_free(page);
		}
		if (!pending)
			break;
		if (mono_s() > until) {
			atomic_fetch_add(&errors, 1);
			fprintf(stderr, "djob_bench: jobs still open after 300 s\n");
			break;
		}
		struct timespec ts = {0, 250 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* Read jobs by id until each is final (a job the worker counted may be a
 * moment from its write being read back; the clock has stopped). */
static void *reader(void *arg)
{
	(void)arg;
	for (;;) {
		int i = atomic_fetch_add(&next_read, 1);
		if (i >= n_jobs)
			break;
		if (!ids[i][0])
			continue; /* its submission failed */
		for (double until = mono_s() + 60;;) {
			char *json = NULL;
			djob_error_t e;
			int64_t fin = 0;
			bool final = false;
			if (djob_client_get(&json, client, ids[i], &e) == 0) {
				cJSON *j = cJSON_Parse(json);
				const char *st = cJSON_GetStringValue(
					cJSON_GetObjectItemCaseSensitive(j, "status"));
				if (st && strcmp(st, "completed") == 0) {
					final = true;
					fin = parse_iso(cJSON_GetStringValue(
						cJSON_GetObjectItemCaseSensitive(j, "finishedAt")));
				} else if (st && (strcmp(st, "failed") == 0 ||
				                  strcmp(st, "cancelled") == 0)) {
					final = true;
					fin = -1;
				}
				cJSON_Delete(j);
				djob_free(json);
			}
			if (final) {
				fin_ms[i] = fin;
				break;
			}
			if (mono_s() > until) {
				atomic_fetch_add(&errors, 1);
				fprintf(stderr, "djob_bench: job %s not finished\n", ids[i]);
				break;
			}
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

/* submitWrites of djob_client_stats, or -1. */
static long long client_writes(void)
{
	long long writes = -1;
	char *stats = NULL;
	djob_error_t e;
	if (djob_client_stats(&stats, client, &e) == 0) {
		cJSON *j = cJSON_Parse(stats);
		const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "submitWrites");
		if (cJSON_IsNumber(w))
			writes = (long long)w->valuedouble;
		cJSON_Delete(j);
		djob_free(stats);
	}
	return writes;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const int64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	double h = (double)(n - 1) * p;
	size_t lo = (size_t)h;
	size_t hi = lo + 1 < n ? lo + 1 : lo;
	return (double)v[lo] + (h - (double)lo) * (double)(v[hi] - v[lo]);
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "lib") != 0 && strcmp(argv[1], "http") != 0)) {
		fputs("usage: djob_bench lib|http [-n N] [-t THREADS] [-r RATE] [-p API_PORT] "
		      "[-W WORKER_PORT]\n",
		      stderr);
		return 2;
	}
	via_http = strcmp(argv[1], "http") == 0;
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "n:t:r:p:W:")) != -1) {
		if (opt == 'n')
			n_jobs = atoi(optarg);
		else if (opt == 't')
			threads = atoi(optarg);
		else if (opt == 'r')
			rate = atof(optarg);
		else if (opt == 'p')
			api_port = atoi(optarg);
		else if (opt == 'W')
			worker_port = atoi(optarg);
		else
			return 2;
	}
	if (n_jobs < 1 || threads < 1)
		return 2;
	djob_error_t e;
	djob_config_t *conf;
	if (djob_config_new(&conf, &e) != 0 || djob_config_load_env(conf, &e) != 0 ||
	    djob_client_new(&client, conf, &e) != 0) {
		fprintf(stderr, "djob_bench: %s\n", e.message);
		return 1;
	}
	snprintf(run_tag, sizeof run_tag, "%lld", (long long)wall_ms());
	/* Warm-up outside the clock: topics, indexes, a first connection. */
	char *warm = NULL;
	if (djob_client_submit(&warm, client, "compute", "{\"input\":\"warm-up\"}", 19, NULL, &e) !=
	            0 ||
	    djob_client_wait(NULL, client, warm, 60000, &e) != 0) {
		fprintf(stderr, "djob_bench: warm-up: %s\n", e.message);
		return 1;
	}
	djob_free(warm);
	ids = calloc((size_t)n_jobs, sizeof *ids);
	due_ms = calloc((size_t)n_jobs, sizeof *due_ms);
	fin_ms = calloc((size_t)n_jobs, sizeof *fin_ms);
	long finished_before = 0;
	long long writes_before = client_writes();
	if (worker_port) {
		conn_t *c = calloc(1, sizeof *c);
		c->fd = -1;
		c->port = worker_port;
		finished_before = worker_finished(c);
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		if (finished_before < 0) {
			fprintf(stderr, "djob_bench: no /metrics on the worker's port %d\n",
			        worker_port);
			return 1;
		}
	}
	pthread_t *t = calloc((size_t)threads, sizeof *t);
	start_ms = wall_ms();
	start_mono = mono_s();
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, submitter, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	double submit_s = mono_s() - start_mono;

	if (worker_port)
		wait_worker(finished_before);
	else
		wait_list();
	/* Every job by id (from the _id index) for its finishedAt. */
	pthread_t *rt = calloc((size_t)threads, sizeof *rt);
	for (int i = 0; i < threads; i++)
		pthread_create(&rt[i], NULL, reader, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(rt[i], NULL);
	free(rt);
	int64_t *lat = calloc((size_t)n_jobs, sizeof *lat);
	size_t nlat = 0;
	long failed = 0;
	int64_t last = start_ms;
	for (int i = 0; i < n_jobs; i++) {
		if (fin_ms[i] < 0) {
			failed++;
		} else if (fin_ms[i] > 0) {
			lat[nlat++] = fin_ms[i] - due_ms[i];
			if (fin_ms[i] > last)
				last = fin_ms[i];
		}
	}
	qsort(lat, nlat, sizeof *lat, cmp_i64);
	/* This client's submission writes in the clock (lib: the jobs'
	 * inserts are this process's MongoDB commands, not the daemons'). */
	long long writes = client_writes() - writes_before;
	double secs = (double)(last - start_ms) / 1000.0;
	printf("{\"via\":\"%s\",\"jobs\":%d,\"threads\":%d,\"rate\":%.1f,\"submit_seconds\":%.3f,"
	       "\"submit_per_s\":%.1f,\"seconds\":%.3f,\"per_s\":%.1f,\"p50_ms\":%.1f,"
	       "\"p90_ms\":%.1f,\"p99_ms\":%.1f,\"max_ms\":%lld,\"completed\":%zu,\"failed\":%ld,"
	       "\"errors\":%ld,\"submit_writes\":%lld}\n",
	       via_http ? "http" : "lib", n_jobs, threads, rate, submit_s,
	       (double)n_jobs / submit_s, secs, secs > 0 ? (double)nlat / secs : 0.0,
	       pct(lat, nlat, 0.5), pct(lat, nlat, 0.9), pct(lat, nlat, 0.99),
	       nlat ? (long long)lat[nlat - 1] : 0LL, nlat, failed, atomic_load(&errors), writes);
	free(lat);
	free(t);
	free(ids);
	free(due_ms);
	free(fin_ms);
	djob_client_free(client);
	djob_config_free(conf);
	return atomic_load(&errors) ? 1 : 0;
}
