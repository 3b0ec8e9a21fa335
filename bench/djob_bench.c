/*
 * djob_bench: the load generator. It submits N compute jobs through libdjob
 * (djob_client_submit) or through djob-api (POST /jobs over keep-alive
 * HTTP/1.1 connections), waits until the running djob-worker(s) have
 * finished them all (the collection must be the phase's own: the wait is
 * for no open job in it), and prints one JSON line: end-to-end jobs/s and
 * submit-to-completed latency p50/p90/p99.
 *
 *   djob_bench lib|http [-n N] [-t THREADS] [-r RATE] [-p API_PORT]
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

static int n_jobs = 500, threads = 16, api_port = 3000;
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
	int fd;
	char buf[65536];
	size_t len;
} conn_t;

static int http_connect(conn_t *c)
{
	c->len = 0;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)api_port)};
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

/* POST body to path; *status and the response body (NUL-terminated, in
 * c->buf) on success. */
static int http_post(conn_t *c, const char *path, const char *body, int *status, const char **resp)
{
	char req[1024];
	int n = snprintf(req, sizeof req,
	                 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
	                 "Content-Length: %zu\r\n\r\n%s",
	                 path, strlen(body), body);
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

/* ---- submitters ---- */

static void *submitter(void *arg)
{
	(void)arg;
	conn_t *c = via_http ? calloc(1, sizeof *c) : NULL;
	if (c)
		c->fd = -1;
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
		if (http_post(c, "/jobs", body, &status, &resp) == 0 && status == 201 &&
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

static char (*qsort_ids)[37];

static int cmp_by_id(const void *a, const void *b)
{
	return strcmp(qsort_ids[*(const int *)a], qsort_ids[*(const int *)b]);
}

/* Index of id among the submitted jobs (order sorts them by id), or -1. */
static int find_id(const int *order, const char *id)
{
	if (!id)
		return -1;
	int lo = 0, hi = n_jobs - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		int c = strcmp(ids[order[mid]], id);
		if (c == 0)
			return order[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
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
		fputs("usage: djob_bench lib|http [-n N] [-t THREADS] [-r RATE] [-p API_PORT]\n",
		      stderr);
		return 2;
	}
	via_http = strcmp(argv[1], "http") == 0;
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "n:t:r:p:")) != -1) {
		if (opt == 'n')
			n_jobs = atoi(optarg);
		else if (opt == 't')
			threads = atoi(optarg);
		else if (opt == 'r')
			rate = atof(optarg);
		else if (opt == 'p')
			api_port = atoi(optarg);
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
	pthread_t *t = calloc((size_t)threads, sizeof *t);
	start_ms = wall_ms();
	start_mono = mono_s();
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, submitter, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	double submit_s = mono_s() - start_mono;

	/* Wait until no job of the collection (a fresh one per phase) is
	 * queued, processing or scheduled, then read every finished job's
	 * finishedAt. Every read is a collection scan on FerretDB 1.24 (a find
	 * by _id too), so a few list calls every 250 ms load the store less
	 * than polling each job. */
	const char *open_states[] = {"queued", "processing", "scheduled"};
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
	int *order = calloc((size_t)n_jobs, sizeof *order);
	for (int i = 0; i < n_jobs; i++)
		order[i] = i;
	qsort_ids = ids;
	qsort(order, (size_t)n_jobs, sizeof *order, cmp_by_id);
	int64_t *lat = calloc((size_t)n_jobs, sizeof *lat);
	size_t nlat = 0;
	long failed = 0;
	int64_t last = start_ms;
	const char *final_states[] = {"completed", "failed", "cancelled"};
	for (size_t k = 0; k < 3; k++) {
		char *cursor = NULL;
		for (;;) {
			char *page = NULL;
			if (djob_client_list(&page, client, final_states[k], NULL, 1000, cursor,
			                     &e) != 0) {
				atomic_fetch_add(&errors, 1);
				fprintf(stderr, "djob_bench: list: %s\n", e.message);
				break;
			}
			cJSON *j = cJSON_Parse(page);
			const cJSON *job;
			cJSON_ArrayForEach(job, cJSON_GetObjectItemCaseSensitive(j, "jobs"))
			{
				const char *id = cJSON_GetStringValue(
					cJSON_GetObjectItemCaseSensitive(job, "_id"));
				int i = find_id(order, id);
				if (i < 0)
					continue; /* a warm-up job */
				if (k > 0) {
					failed++;
					continue;
				}
				int64_t fin = parse_iso(cJSON_GetStringValue(
					cJSON_GetObjectItemCaseSensitive(job, "finishedAt")));
				if (fin > 0) {
					lat[nlat++] = fin - due_ms[i];
					if (fin > last)
						last = fin;
				}
			}
			free(cursor);
			const char *next =
				cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "next"));
			cursor = next ? strdup(next) : NULL;
			cJSON_Delete(j);
			djob_free(page);
			if (!cursor)
				break;
		}
	}
	free(order);
	qsort(lat, nlat, sizeof *lat, cmp_i64);
	double secs = (double)(last - start_ms) / 1000.0;
	printf("{\"via\":\"%s\",\"jobs\":%d,\"threads\":%d,\"rate\":%.1f,\"submit_seconds\":%.3f,"
	       "\"submit_per_s\":%.1f,\"seconds\":%.3f,\"per_s\":%.1f,\"p50_ms\":%.1f,"
	       "\"p90_ms\":%.1f,\"p99_ms\":%.1f,\"max_ms\":%lld,\"completed\":%zu,\"failed\":%ld,"
	       "\"errors\":%ld}\n",
	       via_http ? "http" : "lib", n_jobs, threads, rate, submit_s,
	       (double)n_jobs / submit_s, secs, secs > 0 ? (double)nlat / secs : 0.0,
	       pct(lat, nlat, 0.5), pct(lat, nlat, 0.9), pct(lat, nlat, 0.99),
	       nlat ? (long long)lat[nlat - 1] : 0LL, nlat, failed, atomic_load(&errors));
	free(lat);
	free(t);
	free(ids);
	free(due_ms);
	djob_client_free(client);
	djob_config_free(conf);
	return atomic_load(&errors) ? 1 : 0;
}
