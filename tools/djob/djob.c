/*
 * djob: the command line of a djob cluster. It speaks only djob-api's and
 * djob-worker's HTTP API (http.c), so it works against a remote cluster;
 * JSON is cJSON's. `djob --help` lists the commands, `djob CMD --help`
 * tells one.
 *
 * Exit status: 0 done; 1 an error (the API refused the request, could not
 * be reached or answered something else than JSON); 2 a bad command line;
 * for wait, 3 when a job ended failed or cancelled and 4 when the timeout
 * came first.
 */
#include "http.h"

#include <cjson/cJSON.h>
#include <civetweb.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define EXIT_NOT_COMPLETED 3
#define EXIT_TIMEOUT 4

#define DEFAULT_API_URL "http://127.0.0.1:3000"
#define DEFAULT_WORKER_URL "http://127.0.0.1:4000"
#define POLL_MS 250
#define MAX_ARGS 1024

/* ---- the command line ---- */

/* An option of a command: --name VALUE (or --name=VALUE), or a flag. */
typedef struct {
	const char *name;
	bool flag;
} opt_t;

typedef struct {
	const char *values[16]; /* by the index of the option in its table */
	bool set[16];
	const char *pos[MAX_ARGS];
	int npos;
	const char *url, *token, *worker_url;
	bool help;
} args_t;

typedef struct cmd_s cmd_t;
struct cmd_s {
	const char *name;
	int (*run)(const cmd_t *cmd, args_t *a);
	const opt_t *opts; /* ends with {NULL} */
	const char *usage;
};

/* One sentence on stderr. */
static int fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("djob: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

static int usage_error(const cmd_t *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("djob: ", stderr);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (see djob %s%s--help)\n", cmd ? cmd->name : "", cmd ? " " : "");
	va_end(ap);
	return EXIT_USAGE;
}

/* argv into a: the command's options, the global ones and positionals. */
static int parse_args(const cmd_t *cmd, int argc, char **argv, args_t *a)
{
	bool options = true;
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if (!options || s[0] != '-' || strcmp(s, "-") == 0) {
			if (a->npos == MAX_ARGS)
				return usage_error(cmd, "Too many arguments");
			a->pos[a->npos++] = s;
			continue;
		}
		if (strcmp(s, "--") == 0) {
			options = false;
			continue;
		}
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
			a->help = true;
			continue;
		}
		if (strncmp(s, "--", 2) != 0)
			return usage_error(cmd, "Unknown option %s", s);
		const char *name = s + 2, *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const char **dest = NULL;
		bool flag = false, *set = NULL;
		static const char *const globals[] = {"url", "token", "worker-url"};
		const char **gdest[] = {&a->url, &a->token, &a->worker_url};
		for (int g = 0; g < 3; g++)
			if (strlen(globals[g]) == nlen && strncmp(globals[g], name, nlen) == 0)
				dest = gdest[g];
		for (int k = 0; !dest && cmd && cmd->opts[k].name; k++)
			if (strlen(cmd->opts[k].name) == nlen &&
			    strncmp(cmd->opts[k].name, name, nlen) == 0) {
				dest = &a->values[k];
				set = &a->set[k];
				flag = cmd->opts[k].flag;
			}
		if (!dest)
			return usage_error(cmd, "Unknown option --%.*s", (int)nlen, name);
		if (set)
			*set = true;
		if (flag) {
			if (eq)
				return usage_error(cmd, "Option --%.*s takes no value", (int)nlen,
				                   name);
			*dest = "1";
		} else if (eq) {
			*dest = eq + 1;
		} else if (i + 1 < argc) {
			*dest = argv[++i];
		} else {
			return usage_error(cmd, "Option --%s needs a value", name);
		}
	}
	return 0;
}

static const char *opt(const cmd_t *cmd, const args_t *a, const char *name)
{
	for (int k = 0; cmd->opts[k].name; k++)
		if (strcmp(cmd->opts[k].name, name) == 0)
			return a->values[k];
	return NULL;
}

/* A whole number from `lo` to `hi` in *out; false when s is not one. */
static bool parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* Seconds (may have a fraction) from 0 to a day, in *ms. */
static bool parse_seconds(const char *s, long *ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !(v >= 0 && v <= 86400))
		return false;
	*ms = (long)(v * 1000);
	return true;
}

/* ---- talking to the API ---- */

typedef struct {
	cli_url_t url;
	const char *url_text;
	const char *token;
} api_t;

static int api_open(api_t *api, const cmd_t *cmd, const char *url, const char *token)
{
	char why[512];
	api->url_text = url;
	api->token = token;
	if (cli_url_parse(&api->url, url, why, sizeof why) != 0)
		return usage_error(cmd, "%s", why);
	for (const char *p = token ? token : ""; *p; p++)
		if ((unsigned char)*p < 0x21 || *p == 0x7f)
			return usage_error(cmd, "The token holds a space or a control character");
	return 0;
}

static int api_from_args(api_t *api, const cmd_t *cmd, const args_t *a)
{
	const char *url = a->url ? a->url : getenv("DJOB_API_URL");
	const char *token = a->token ? a->token : getenv("DJOB_TOKEN");
	return api_open(api, cmd, url && *url ? url : DEFAULT_API_URL, token);
}

/* The error text of an answer that is not 2xx. */
static int api_refused(int status, const char *body)
{
	cJSON *j = cJSON_Parse(body);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	if (cJSON_IsString(e) && *e->valuestring)
		fail(EXIT_ERROR, "%s (HTTP %d)", e->valuestring, status);
	else
		fail(EXIT_ERROR, "The server answered HTTP %d without an error text", status);
	cJSON_Delete(j);
	return EXIT_ERROR;
}

/* One request; 0 with the parsed JSON answer in *out (may be NULL: not
 * wanted) when it is 2xx, or an exit status after saying why. `ok_503`
 * takes a 503 answer as an answer (GET /health says degraded so). */
static int api_call_status(const api_t *api, const char *method, const char *path, const char *body,
                           cJSON **out, int *status_out, bool ok_503)
{
	char why[512], *resp = NULL;
	int status;
	if (out)
		*out = NULL;
	if (cli_http(&api->url, method, path, body, api->token, &status, &resp, why, sizeof why) !=
	    0)
		return fail(EXIT_ERROR, "%s (%s)", why, api->url_text);
	if (status_out)
		*status_out = status;
	int rc = 0;
	if ((status < 200 || status > 299) && !(ok_503 && status == 503)) {
		rc = api_refused(status, resp);
	} else if (out && !(*out = cJSON_Parse(resp))) {
		rc = fail(EXIT_ERROR, "The answer of %s %s is not JSON (HTTP %d)", method, path,
		          status);
	}
	free(resp);
	return rc;
}

static int api_call(const api_t *api, const char *method, const char *path, const char *body,
                    cJSON **out)
{
	return api_call_status(api, method, path, body, out, NULL, false);
}

/* "/jobs/<id><suffix>", the id encoded. Ownership: free(). */
static char *job_path(const char *id, const char *suffix)
{
	char *e = cli_encode(id);
	size_t n = strlen(e ? e : "") + strlen(suffix) + 8;
	char *p = e ? malloc(n) : NULL;
	if (p)
		snprintf(p, n, "/jobs/%s%s", e, suffix);
	free(e);
	return p;
}

static const char *str_of(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static double num_of(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void print_json(const cJSON *j, bool pretty)
{
	char *s = pretty ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
	if (s)
		printf("%s\n", s);
	free(s);
}

/* Where `wait` stops: the terminal states, and quarantined, which changes
 * only when an admin retries it. */
static bool is_terminal_status(const char *s)
{
	return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
	       strcmp(s, "cancelled") == 0 || strcmp(s, "quarantined") == 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- submit ---- */

/* The whole of a file, or of stdin for "-". Ownership: free(). */
static char *read_all(const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f)
		return NULL;
	size_t n = 0, cap = 0;
	char *buf = NULL;
	for (;;) {
		if (cap - n < 4096) {
			char *b = realloc(buf, cap = cap ? cap * 2 : 8192);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (buf)
		buf[n] = '\0';
	if (ferror(f)) {
		free(buf);
		buf = NULL;
	}
	if (f != stdin)
		fclose(f);
	return buf;
}

/* Print the ids of a POST /jobs answer, one a line. */
static void print_ids(const cJSON *answer)
{
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(answer, "jobIds"), *id;
	if (cJSON_IsArray(ids)) {
		cJSON_ArrayForEach(id, ids) if (cJSON_IsString(id)) printf("%s\n", id->valuestring);
	} else {
		printf("%s\n", str_of(answer, "jobId"));
	}
	fflush(stdout);
}

/* POST one batch of jobs; lines first..last name them in messages. */
static int post_batch(const api_t *api, cJSON *batch, long first, long last, bool json)
{
	char *body = cJSON_PrintUnformatted(batch);
	if (!body)
		return fail(EXIT_ERROR, "Out of memory");
	char why[512], *resp = NULL;
	int status, rc = 0;
	if (cli_http(&api->url, "POST", "/jobs", body, api->token, &status, &resp, why,
	             sizeof why) != 0) {
		rc = fail(EXIT_ERROR, "Lines %ld-%ld: %s (%s)", first, last, why, api->url_text);
	} else if (status < 200 || status > 299) {
		fprintf(stderr, "djob: lines %ld-%ld were not submitted:\n", first, last);
		rc = api_refused(status, resp);
	} else {
		cJSON *a = cJSON_Parse(resp);
		if (json)
			print_json(a, false);
		else
			print_ids(a);
		cJSON_Delete(a);
	}
	free(resp);
	free(body);
	return rc;
}

/* submit --jsonl: one job object a line, in batches. */
static int submit_jsonl(const cmd_t *cmd, const api_t *api, const char *path, long batch_max,
                        bool json)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!f)
		return fail(EXIT_ERROR, "Cannot open %s: %s", path, strerror(errno));
	(void)cmd;
	char *line = NULL;
	size_t cap = 0;
	long lineno = 0, first = 0, jobs = 0;
	int rc = 0;
	cJSON *batch = cJSON_CreateArray();
	ssize_t got;
	while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
		lineno++;
		const char *p = line;
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (!*p)
			continue; /* blank lines are allowed */
		cJSON *job = cJSON_Parse(line);
		if (!cJSON_IsObject(job)) {
			cJSON_Delete(job);
			rc = fail(EXIT_ERROR, "Line %ld of %s is not a JSON object", lineno, path);
			break;
		}
		if (cJSON_GetArraySize(batch) == 0)
			first = lineno;
		jobs++;
		cJSON_AddItemToArray(batch, job);
		if (cJSON_GetArraySize(batch) == batch_max) {
			rc = post_batch(api, batch, first, lineno, json);
			cJSON_Delete(batch);
			batch = cJSON_CreateArray();
		}
	}
	if (rc == 0 && ferror(f))
		rc = fail(EXIT_ERROR, "Cannot read %s", path);
	if (rc == 0 && cJSON_GetArraySize(batch) > 0)
		rc = post_batch(api, batch, first, lineno, json);
	if (rc == 0 && jobs == 0)
		rc = fail(EXIT_ERROR, "%s holds no job",
		          strcmp(path, "-") == 0 ? "Standard input" : path);
	cJSON_Delete(batch);
	free(line);
	if (f != stdin)
		fclose(f);
	return rc;
}

static int cmd_submit(const cmd_t *cmd, args_t *a)
{
	api_t api;
	int rc = api_from_args(&api, cmd, a);
	if (rc)
		return rc;
	bool json = opt(cmd, a, "json") != NULL;
	const char *jsonl = opt(cmd, a, "jsonl");
	if (jsonl) {
		long batch = 100;
		const char *b = opt(cmd, a, "batch");
		if (a->npos)
			return usage_error(cmd, "--jsonl takes no TYPE or PAYLOAD");
		if (opt(cmd, a, "run-at") || opt(cmd, a, "max-attempts") ||
		    opt(cmd, a, "idempotency-key"))
			return usage_error(cmd, "With --jsonl, give runAt, maxAttempts and "
			                        "idempotencyKey in each line");
		if (b && !parse_long(b, 1, 1000, &batch))
			return usage_error(cmd, "--batch must be a number from 1 to 1000");
		return submit_jsonl(cmd, &api, jsonl, batch, json);
	}
	if (a->npos < 1 || a->npos > 2)
		return usage_error(cmd, "submit takes a TYPE and at most one PAYLOAD");
	const char *payload_arg = a->npos == 2 ? a->pos[1] : "{}";
	char *text = NULL;
	if (payload_arg[0] == '@' || strcmp(payload_arg, "-") == 0) {
		const char *path = payload_arg[0] == '@' ? payload_arg + 1 : "-";
		if (!(text = read_all(path)))
			return fail(EXIT_ERROR, "Cannot read %s: %s", path, strerror(errno));
		payload_arg = text;
	}
	cJSON *payload = cJSON_Parse(payload_arg);
	free(text);
	if (!payload)
		return fail(EXIT_ERROR, "The payload is not JSON");
	cJSON *job = cJSON_CreateObject();
	cJSON_AddStringToObject(job, "type", a->pos[0]);
	cJSON_AddItemToObject(job, "payload", payload);
	const char *run_at = opt(cmd, a, "run-at"), *key = opt(cmd, a, "idempotency-key");
	const char *max = opt(cmd, a, "max-attempts");
	long m;
	if (run_at)
		cJSON_AddStringToObject(job, "runAt", run_at);
	if (key)
		cJSON_AddStringToObject(job, "idempotencyKey", key);
	if (max) {
		if (!parse_long(max, 1, 1000, &m)) {
			cJSON_Delete(job);
			return usage_error(cmd, "--max-attempts must be a number from 1 to 1000");
		}
		cJSON_AddNumberToObject(job, "maxAttempts", (double)m);
	}
	char *body = cJSON_PrintUnformatted(job);
	cJSON_Delete(job);
	cJSON *answer = NULL;
	rc = body ? api_call(&api, "POST", "/jobs", body, &answer)
	          : fail(EXIT_ERROR, "Out of memory");
	free(body);
	if (rc == 0) {
		if (json)
			print_json(answer, false);
		else
			print_ids(answer);
	}
	cJSON_Delete(answer);
	return rc;
}

/* ---- get, cancel, retry ---- */

static int one_job(const cmd_t *cmd, args_t *a, const char *method, const char *suffix,
                   bool print_doc)
{
	api_t api;
	int rc = api_from_args(&api, cmd, a);
	if (rc)
		return rc;
	if (a->npos != 1)
		return usage_error(cmd, "%s takes one job ID", cmd->name);
	char *path = job_path(a->pos[0], suffix);
	cJSON *doc = NULL;
	rc = path ? api_call(&api, method, path, NULL, &doc) : fail(EXIT_ERROR, "Out of memory");
	free(path);
	if (rc == 0) {
		if (print_doc || opt(cmd, a, "json"))
			print_json(doc, print_doc);
		else
			printf("%s %s\n", str_of(doc, "_id"), str_of(doc, "status"));
	}
	cJSON_Delete(doc);
	return rc;
}

static int cmd_get(const cmd_t *cmd, args_t *a)
{
	return one_job(cmd, a, "GET", "", true);
}

static int cmd_cancel(const cmd_t *cmd, args_t *a)
{
	return one_job(cmd, a, "DELETE", "", false);
}

static int cmd_retry(const cmd_t *cmd, args_t *a)
{
	return one_job(cmd, a, "POST", "/retry", false);
}

/* ---- list ---- */

/* "?status=..&type=..&limit=..&after=.." from the options set. */
static char *list_query(const char *status, const char *type, const char *limit, const char *cursor)
{
	const char *keys[] = {"status", "type", "limit", "after"};
	const char *vals[] = {status, type, limit, cursor};
	size_t cap = 16;
	for (int i = 0; i < 4; i++)
		cap += vals[i] ? 3 * strlen(vals[i]) + 8 : 0;
	char *q = malloc(cap);
	if (!q)
		return NULL;
	strcpy(q, "/jobs");
	for (int i = 0, n = 0; i < 4; i++) {
		if (!vals[i])
			continue;
		char *e = cli_encode(vals[i]);
		if (!e) {
			free(q);
			return NULL;
		}
		strcat(q, n++ ? "&" : "?");
		strcat(q, keys[i]);
		strcat(q, "=");
		strcat(q, e);
		free(e);
	}
	return q;
}

/* "2026-12-03T14:12:34.241Z" as "2026-12-03 14:12:34". */
static void short_time(const char *iso, char out[20])
{
	snprintf(out, 20, "%.19s", iso);
	if (strlen(out) > 10 && out[10] == 'T')
		out[10] = ' ';
}

static int cmd_list(const cmd_t *cmd, args_t *a)
{
	api_t api;
	int rc = api_from_args(&api, cmd, a);
	if (rc)
		return rc;
	if (a->npos)
		return usage_error(cmd, "list takes no arguments");
	const char *limit = opt(cmd, a, "limit");
	long l;
	if (limit && !parse_long(limit, 1, 1000, &l))
		return usage_error(cmd, "--limit must be a number from 1 to 1000");
	char *path = list_query(opt(cmd, a, "status"), opt(cmd, a, "type"), limit,
	                        opt(cmd, a, "cursor"));
	cJSON *page = NULL;
	rc = path ? api_call(&api, "GET", path, NULL, &page) : fail(EXIT_ERROR, "Out of memory");
	free(path);
	if (rc != 0)
		return rc;
	if (opt(cmd, a, "json")) {
		print_json(page, false);
		cJSON_Delete(page);
		return 0;
	}
	const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(page, "jobs"), *j;
	int wtype = 4, wstatus = 6;
	cJSON_ArrayForEach(j, jobs)
	{
		int t = (int)strlen(str_of(j, "type")), s = (int)strlen(str_of(j, "status"));
		wtype = t > wtype ? t : wtype;
		wstatus = s > wstatus ? s : wstatus;
	}
	printf("%-36s  %-*s  %-*s  %8s  %s\n", "ID", wtype, "TYPE", wstatus, "STATUS", "ATTEMPTS",
	       "CREATED (UTC)");
	cJSON_ArrayForEach(j, jobs)
	{
		char created[20];
		short_time(str_of(j, "createdAt"), created);
		printf("%-36s  %-*s  %-*s  %8.0f  %s\n", str_of(j, "_id"), wtype, str_of(j, "type"),
		       wstatus, str_of(j, "status"), num_of(j, "attempts"), created);
	}
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(page, "next");
	fflush(stdout);
	if (cJSON_IsString(next))
		fprintf(stderr, "More jobs: djob list --cursor %s\n", next->valuestring);
	cJSON_Delete(page);
	return 0;
}

/* ---- wait ---- */

static void progress(int done, int n, int completed, int failed)
{
	const int width = 30;
	int fill = n ? done * width / n : width;
	printf("\r[");
	for (int i = 0; i < width; i++)
		putchar(i < fill ? '#' : '-');
	printf("] %d/%d  completed %d  failed or cancelled %d\033[K", done, n, completed, failed);
	fflush(stdout);
}

static int cmd_wait(const cmd_t *cmd, args_t *a)
{
	api_t api;
	int rc = api_from_args(&api, cmd, a);
	if (rc)
		return rc;
	if (a->npos < 1)
		return usage_error(cmd, "wait takes one or more job IDs");
	long timeout_ms = -1;
	const char *t = opt(cmd, a, "timeout");
	if (t && !parse_seconds(t, &timeout_ms))
		return usage_error(cmd, "--timeout must be a number of seconds up to 86400");
	bool tty = isatty(STDOUT_FILENO);
	int n = a->npos, done = 0, completed = 0, failed = 0;
	bool finished[MAX_ARGS] = {false};
	long long deadline = timeout_ms >= 0 ? mono_ms() + timeout_ms : -1;
	if (tty)
		progress(0, n, 0, 0);
	for (;;) {
		for (int i = 0; i < n && rc == 0; i++) {
			if (finished[i])
				continue;
			char *path = job_path(a->pos[i], "");
			cJSON *doc = NULL;
			rc = path ? api_call(&api, "GET", path, NULL, &doc)
			          : fail(EXIT_ERROR, "Out of memory");
			free(path);
			const char *st = rc == 0 ? str_of(doc, "status") : "";
			if (rc == 0 && is_terminal_status(st)) {
				finished[i] = true;
				done++;
				if (strcmp(st, "completed") == 0)
					completed++;
				else
					failed++;
				if (tty)
					printf("\r\033[K");
				const char *e = str_of(doc, "error");
				printf("%s %s%s%s\n", a->pos[i], st, *e ? ": " : "", e);
				if (tty)
					progress(done, n, completed, failed);
				fflush(stdout);
			}
			cJSON_Delete(doc);
		}
		if (rc != 0 || done == n)
			break;
		if (deadline >= 0 && mono_ms() >= deadline)
			break;
		sleep_ms(POLL_MS);
	}
	if (tty)
		printf("\n");
	if (rc != 0)
		return rc;
	if (done < n) {
		for (int i = 0; i < n; i++)
			if (!finished[i])
				printf("%s not finished\n", a->pos[i]);
		return fail(EXIT_TIMEOUT, "%d of %d jobs did not finish within %s s", n - done, n,
		            t);
	}
	return failed ? EXIT_NOT_COMPLETED : 0;
}

/* ---- watch ---- */

static volatile sig_atomic_t interrupted = 0;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

typedef struct {
	char id[64];
	char type[64];
	char status[16];
	bool seen; /* on the last page */
} watched_t;

static void stamp(char out[16])
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(out, 16, "%H:%M:%S", &tm);
}

static int cmd_watch(const cmd_t *cmd, args_t *a)
{
	api_t api;
	int rc = api_from_args(&api, cmd, a);
	if (rc)
		return rc;
	if (a->npos)
		return usage_error(cmd, "watch takes no arguments");
	long interval = 1000, l;
	const char *iv = opt(cmd, a, "interval"), *limit = opt(cmd, a, "limit");
	if (iv && (!parse_seconds(iv, &interval) || interval < 100))
		return usage_error(cmd, "--interval must be a number of seconds from 0.1 to 86400");
	if (limit && !parse_long(limit, 1, 1000, &l))
		return usage_error(cmd, "--limit must be a number from 1 to 1000");
	char *path =
		list_query(opt(cmd, a, "status"), opt(cmd, a, "type"), limit ? limit : "100", NULL);
	if (!path)
		return fail(EXIT_ERROR, "Out of memory");
	watched_t *w = NULL;
	size_t nw = 0;
	/* SIGINT or SIGTERM ends the watch cleanly, with exit status 0. */
	struct sigaction sa = {0};
	sa.sa_handler = on_interrupt;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!interrupted) {
		cJSON *page = NULL;
		if ((rc = api_call(&api, "GET", path, NULL, &page)) != 0)
			break;
		for (size_t k = 0; k < nw; k++)
			w[k].seen = false;
		const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(page, "jobs"), *j;
		char ts[16];
		stamp(ts);
		cJSON_ArrayForEach(j, jobs)
		{
			const char *id = str_of(j, "_id"), *st = str_of(j, "status");
			size_t k;
			for (k = 0; k < nw && strcmp(w[k].id, id) != 0; k++)
				;
			if (k == nw) {
				watched_t *b = realloc(w, (nw + 1) * sizeof *w);
				if (!b) {
					rc = fail(EXIT_ERROR, "Out of memory");
					break;
				}
				w = b;
				nw++;
				snprintf(w[k].id, sizeof w[k].id, "%s", id);
				snprintf(w[k].type, sizeof w[k].type, "%s", str_of(j, "type"));
				snprintf(w[k].status, sizeof w[k].status, "%s", st);
				printf("%s %s %s %s\n", ts, w[k].id, w[k].type, st);
			} else if (strcmp(w[k].status, st) != 0) {
				printf("%s %s %s %s -> %s\n", ts, w[k].id, w[k].type, w[k].status,
				       st);
				snprintf(w[k].status, sizeof w[k].status, "%s", st);
			}
			w[k].seen = true;
		}
		cJSON_Delete(page);
		/* A job that left the filter's page: ask it where it went. */
		for (size_t k = 0; rc == 0 && k < nw;) {
			if (w[k].seen) {
				k++;
				continue;
			}
			char *jp = job_path(w[k].id, "");
			char why[512], *resp = NULL;
			int status = 0;
			if (jp &&
			    cli_http(&api.url, "GET", jp, NULL, api.token, &status, &resp, why,
			             sizeof why) == 0 &&
			    status == 200) {
				cJSON *doc = cJSON_Parse(resp);
				const char *st = str_of(doc, "status");
				if (*st && strcmp(st, w[k].status) != 0)
					printf("%s %s %s %s -> %s\n", ts, w[k].id, w[k].type,
					       w[k].status, st);
				cJSON_Delete(doc);
			}
			free(resp);
			free(jp);
			w[k] = w[--nw];
		}
		fflush(stdout);
		if (rc != 0)
			break;
		for (long slept = 0; slept < interval && !interrupted; slept += 50)
			sleep_ms(interval - slept < 50 ? interval - slept : 50);
	}
	free(w);
	free(path);
	return rc;
}

/* ---- health, stats, worker ---- */

static int cmd_health(const cmd_t *cmd, args_t *a)
{
	api_t api;
	int rc = api_from_args(&api, cmd, a);
	if (rc)
		return rc;
	if (a->npos)
		return usage_error(cmd, "health takes no arguments");
	cJSON *h = NULL;
	int status = 0;
	if ((rc = api_call_status(&api, "GET", "/health", NULL, &h, &status, true)) != 0)
		return rc;
	if (opt(cmd, a, "json"))
		print_json(h, false);
	else
		printf("%s (kafka %s, mongo %s)\n", str_of(h, "status"), str_of(h, "kafka"),
		       str_of(h, "mongo"));
	cJSON_Delete(h);
	return status == 200 ? 0 : fail(EXIT_ERROR, "The API is degraded (HTTP %d)", status);
}

static const char *const STATES[] = {"queued",    "scheduled", "processing",
                                     "completed", "failed",    "cancelled"};

static double sum_series(const cJSON *series, const char *key, int last)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(series, key);
	int n = cJSON_GetArraySize(arr);
	double s = 0;
	for (int i = n - last < 0 ? 0 : n - last; i < n; i++)
		s += cJSON_GetArrayItem(arr, i)->valuedouble;
	return s;
}

static int cmd_stats(const cmd_t *cmd, args_t *a)
{
	api_t api;
	int rc = api_from_args(&api, cmd, a);
	if (rc)
		return rc;
	if (a->npos)
		return usage_error(cmd, "stats takes no arguments");
	cJSON *st = NULL;
	if ((rc = api_call(&api, "GET", "/stats", NULL, &st)) != 0)
		return rc;
	if (opt(cmd, a, "json")) {
		print_json(st, false);
		cJSON_Delete(st);
		return 0;
	}
	const cJSON *by_type = cJSON_GetObjectItemCaseSensitive(st, "byType"), *t;
	const cJSON *by_status = cJSON_GetObjectItemCaseSensitive(st, "byStatus");
	int wt = 5;
	cJSON_ArrayForEach(t, by_type) if ((int)strlen(t->string) > wt) wt = (int)strlen(t->string);
	printf("%-*s  %9s", wt, "TYPE", "TOTAL");
	for (int i = 0; i < 6; i++)
		printf("  %10s", STATES[i]);
	printf("\n");
	cJSON_ArrayForEach(t, by_type)
	{
		printf("%-*s  %9.0f", wt, t->string, num_of(t, "total"));
		for (int i = 0; i < 6; i++)
			printf("  %10.0f", num_of(t, STATES[i]));
		printf("\n");
	}
	printf("%-*s  %9.0f", wt, "all", num_of(st, "total"));
	for (int i = 0; i < 6; i++)
		printf("  %10.0f", num_of(by_status, STATES[i]));
	printf("\n");
	const cJSON *tp = cJSON_GetObjectItemCaseSensitive(st, "throughput");
	const cJSON *sec = cJSON_GetObjectItemCaseSensitive(tp, "perSecond");
	const cJSON *min = cJSON_GetObjectItemCaseSensitive(tp, "perMinute");
	printf("\nfinished    last minute   last hour\n");
	printf("completed   %11.0f  %10.0f\n", sum_series(sec, "completed", 60),
	       sum_series(min, "completed", 60));
	printf("failed      %11.0f  %10.0f\n", sum_series(sec, "failed", 60),
	       sum_series(min, "failed", 60));
	printf("(as of %s)\n", str_of(st, "asOf"));
	cJSON_Delete(st);
	return 0;
}

static void workers_width(const cJSON *parts, int *wtopic)
{
	const cJSON *p;
	cJSON_ArrayForEach(p, parts) if ((int)strlen(str_of(p, "topic")) > *wtopic) *wtopic =
		(int)strlen(str_of(p, "topic"));
}

/* One row a partition; a worker holding none gets a row of dashes. */
static void workers_rows(const char *id, const char *host, const cJSON *parts, int wid, int whost,
                         int wtopic)
{
	const cJSON *p;
	if (cJSON_GetArraySize(parts) == 0)
		printf("%-*s  %-*s  %-*s  %9s  %10s  %10s  %8s\n", wid, id, whost, host, wtopic,
		       "-", "-", "-", "-", "-");
	cJSON_ArrayForEach(p, parts)
	{
		printf("%-*s  %-*s  %-*s  %9.0f  %10.0f  %10.0f  %8.0f\n", wid, id, whost, host,
		       wtopic, str_of(p, "topic"), num_of(p, "partition"), num_of(p, "committed"),
		       num_of(p, "end"), num_of(p, "lag"));
	}
}

static int cmd_workers(const cmd_t *cmd, args_t *a)
{
	api_t api;
	int rc = api_from_args(&api, cmd, a);
	if (rc)
		return rc;
	if (a->npos)
		return usage_error(cmd, "workers takes no arguments");
	cJSON *g = NULL;
	if ((rc = api_call(&api, "GET", "/workers", NULL, &g)) != 0)
		return rc;
	if (opt(cmd, a, "json")) {
		print_json(g, false);
		cJSON_Delete(g);
		return 0;
	}
	const cJSON *workers = cJSON_GetObjectItemCaseSensitive(g, "workers"), *w;
	const cJSON *unassigned = cJSON_GetObjectItemCaseSensitive(g, "unassigned");
	int wid = 12, whost = 4, wtopic = 5;
	cJSON_ArrayForEach(w, workers)
	{
		int n = (int)strlen(str_of(w, "id")), h = (int)strlen(str_of(w, "host"));
		wid = n > wid ? n : wid;
		whost = h > whost ? h : whost;
		workers_width(cJSON_GetObjectItemCaseSensitive(w, "partitions"), &wtopic);
	}
	workers_width(unassigned, &wtopic);
	printf("%-*s  %-*s  %-*s  %9s  %10s  %10s  %8s\n", wid, "WORKER", whost, "HOST", wtopic,
	       "TOPIC", "PARTITION", "COMMITTED", "END", "LAG");
	cJSON_ArrayForEach(w, workers)
		workers_rows(str_of(w, "id"), str_of(w, "host"),
	                     cJSON_GetObjectItemCaseSensitive(w, "partitions"), wid, whost, wtopic);
	if (cJSON_GetArraySize(unassigned) > 0)
		workers_rows("(unassigned)", "-", unassigned, wid, whost, wtopic);
	const cJSON *lag = cJSON_GetObjectItemCaseSensitive(g, "lag"), *t;
	printf("\ngroup %s (%s): %d worker%s, lag %.0f\n", str_of(g, "group"), str_of(g, "state"),
	       cJSON_GetArraySize(workers), cJSON_GetArraySize(workers) == 1 ? "" : "s",
	       num_of(lag, "total"));
	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(lag, "byTopic"))
		printf("  %-*s  %8.0f\n", wtopic, t->string, t->valuedouble);
	printf("(as of %s)\n", str_of(g, "asOf"));
	cJSON_Delete(g);
	return 0;
}

static int cmd_worker(const cmd_t *cmd, args_t *a)
{
	if (a->npos != 1 || (strcmp(a->pos[0], "start") != 0 && strcmp(a->pos[0], "stop") != 0 &&
	                     strcmp(a->pos[0], "status") != 0))
		return usage_error(cmd, "worker takes one of start, stop or status");
	const char *url = a->worker_url ? a->worker_url : getenv("DJOB_WORKER_URL");
	const char *token = a->token ? a->token : getenv("DJOB_TOKEN");
	api_t api;
	int rc = api_open(&api, cmd, url && *url ? url : DEFAULT_WORKER_URL, token);
	if (rc)
		return rc;
	cJSON *out = NULL;
	bool status = strcmp(a->pos[0], "status") == 0;
	rc = status ? api_call(&api, "GET", "/health", NULL, &out)
	            : api_call(&api, "POST", strcmp(a->pos[0], "start") == 0 ? "/start" : "/stop",
	                       NULL, &out);
	if (rc == 0) {
		if (opt(cmd, a, "json") || status)
			print_json(out, status && !opt(cmd, a, "json"));
		else
			printf("%s\n", str_of(out, "status"));
	}
	cJSON_Delete(out);
	return rc;
}

/* ---- the commands ---- */

#define GLOBAL_HELP                                                                                \
	"  --url URL        djob-api's base URL (DJOB_API_URL; " DEFAULT_API_URL ")\n"             \
	"  --token TOKEN    bearer token (DJOB_TOKEN)\n"

static const opt_t submit_opts[] = {
	{"jsonl", false},           {"batch", false}, {"run-at", false}, {"max-attempts", false},
	{"idempotency-key", false}, {"json", true},   {NULL, false}};
static const opt_t json_opts[] = {{"json", true}, {NULL, false}};
static const opt_t list_opts[] = {{"status", false}, {"type", false}, {"limit", false},
                                  {"cursor", false}, {"json", true},  {NULL, false}};
static const opt_t wait_opts[] = {{"timeout", false}, {NULL, false}};
static const opt_t watch_opts[] = {
	{"status", false}, {"type", false}, {"limit", false}, {"interval", false}, {NULL, false}};

static const cmd_t commands[] = {
	{"submit", cmd_submit, submit_opts,
         "usage: djob submit TYPE [PAYLOAD|@FILE|-] [options]\n"
         "       djob submit --jsonl FILE|- [--batch N]\n"
         "Submit a job of TYPE whose payload is the JSON object PAYLOAD (default {}),\n"
         "read from FILE or from standard input (-); print its id. With --jsonl,\n"
         "submit one job a line, each a JSON object as POST /jobs takes it\n"
         "({\"type\":...,\"payload\":{...}}), N jobs to a request (default 100, at most\n"
         "1000), and print their ids in order; a refused request stops there.\n"
         "  --run-at ISO-8601          start no earlier than then\n"
         "  --max-attempts N           attempts before the job fails (1-1000)\n"
         "  --idempotency-key KEY      a repeat returns the first job\n"
         "  --json                     print the API's answer\n"},
	{"get", cmd_get, json_opts, "usage: djob get ID\nPrint the job document.\n"},
	{"list", cmd_list, list_opts,
         "usage: djob list [--status S] [--type T] [--limit N] [--cursor C] [--json]\n"
         "List jobs, newest first, as a table (--json: the API's page). When there\n"
         "are more, standard error tells the --cursor of the next page.\n"},
	{"wait", cmd_wait, wait_opts,
         "usage: djob wait ID... [--timeout SECONDS]\n"
         "Wait until every job is completed, failed or cancelled, printing each as it\n"
         "ends (with a progress bar on a terminal). Exit status: 0 all completed, 3\n"
         "some failed or were cancelled, 4 the timeout came first.\n"},
	{"watch", cmd_watch, watch_opts,
         "usage: djob watch [--status S] [--type T] [--limit N] [--interval SECONDS]\n"
         "Print the newest N jobs (default 100) and then every change of their\n"
         "status, polling every interval (default 1 s), until interrupted\n"
         "(SIGINT or SIGTERM: exit status 0).\n"},
	{"cancel", cmd_cancel, json_opts,
         "usage: djob cancel ID [--json]\nCancel a job that has not finished (an admin token).\n"},
	{"retry", cmd_retry, json_opts,
         "usage: djob retry ID [--json]\nRequeue a failed or cancelled job (an admin token).\n"},
	{"health", cmd_health, json_opts,
         "usage: djob health [--json]\nWhether the API reaches Kafka and MongoDB (exit 1 when "
         "not).\n"},
	{"stats", cmd_stats, json_opts,
         "usage: djob stats [--json]\n"
         "Jobs by type and status, and how many completed and failed in the last\n"
         "minute and hour (GET /stats).\n"},
	{"workers", cmd_workers, json_opts,
         "usage: djob workers [--json]\n"
         "The workers of the consumer group as Kafka sees them (GET /workers): each\n"
         "one's partitions with the group's committed offset, the partition's end and\n"
         "the lag between them; partitions no worker holds as (unassigned); then the\n"
         "group's state and its lag in all and by topic. COMMITTED is -1 where the\n"
         "group has committed nothing.\n"},
	{"worker", cmd_worker, json_opts,
         "usage: djob worker start|stop|status [--worker-url URL] [--json]\n"
         "Start or stop a worker's consumer, or print its health.\n"
         "  --worker-url URL   the worker's base URL (DJOB_WORKER_URL; " DEFAULT_WORKER_URL ")\n"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void main_usage(FILE *f)
{
	fprintf(f, "usage: djob [--url URL] [--token TOKEN] COMMAND [ARGS]\n"
	           "The command line of a djob cluster, over its HTTP API.\n\nCommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++) {
		const char *u = commands[i].usage + strlen("usage: ");
		fprintf(f, "  %.*s\n", (int)strcspn(u, "\n"), u);
	}
	fprintf(f, "\nOptions of every command:\n" GLOBAL_HELP
	           "\n`djob COMMAND --help` tells more. Exit status: 0 done, 1 an error, 2 a bad\n"
	           "command line, 3 (wait) a job failed or was cancelled, 4 (wait) timed out.\n");
}

int main(int argc, char **argv)
{
	args_t a = {0};
	int i = 1;
	/* Options before the command. */
	while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "-") != 0) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			main_usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("djob %s\n", DJOB_CLI_VERSION);
			return 0;
		}
		int take = strchr(argv[i], '=') ? 1 : 2;
		if (i + take > argc)
			return usage_error(NULL, "Option %s needs a value", argv[i]);
		int rc = parse_args(NULL, take, argv + i, &a);
		if (rc)
			return rc;
		if (a.npos)
			return usage_error(NULL, "Unknown option %s", argv[i]);
		i += take;
	}
	if (i == argc)
		return usage_error(NULL, "No command given");
	const char *name = argv[i++];
	if (strcmp(name, "help") == 0) {
		name = i < argc ? argv[i] : NULL;
		for (size_t k = 0; name && k < NCOMMANDS; k++)
			if (strcmp(commands[k].name, name) == 0) {
				printf("%s" GLOBAL_HELP, commands[k].usage);
				return 0;
			}
		main_usage(name ? stderr : stdout);
		return name ? EXIT_USAGE : 0;
	}
	const cmd_t *cmd = NULL;
	for (size_t k = 0; k < NCOMMANDS; k++)
		if (strcmp(commands[k].name, name) == 0)
			cmd = &commands[k];
	if (!cmd)
		return usage_error(NULL, "Unknown command %s", name);
	int rc = parse_args(cmd, argc - i, argv + i, &a);
	if (rc)
		return rc;
	if (a.help) {
		printf("%s" GLOBAL_HELP, cmd->usage);
		return 0;
	}
	mg_init_library(0);
	rc = cmd->run(cmd, &a);
	mg_exit_library();
	return rc;
}
