/*
 * The `file` job handler, written as a user of libdjob would write one.
 *
 * Payload: {"path": "reports/2025.csv"}, relative to the file root.
 * Result:  {"sha256": "<64 hex digits>", "size": <bytes>, "lines": <count>}
 *   lines counts newline bytes, plus one when the file does not end with a
 *   newline (so "a\nb" has 2 lines, "a\n" has 1 and an empty file 0).
 *
 * The file root is the directory named by the environment variable
 * DJOB_FILE_ROOT, read once when the handler is registered; registration
 * fails when it is unset or not a directory. A path that leaves the root
 * fails the job: ".." above the root, an absolute path, or a symlink whose
 * target is outside the root. The check resolves the path with realpath(),
 * compares it with the root plus a trailing '/', then opens the resolved path
 * one component at a time with openat(O_NOFOLLOW), so a component swapped
 * for a symlink after the check cannot lead out either. The file is read in
 * 64 KiB chunks, never whole.
 *
 * Built twice (examples/meson.build): as the plugin djob-handler-file.so,
 * whose djob_plugin_register a worker calls from djob_worker_load_plugin, and
 * linked into handlers_worker, which calls file_handler_register itself.
 */
#include <djob/djob.h>

#include <cjson/cJSON.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The project builds with -fvisibility=hidden; the plugin entry point and
 * the functions other programs link must stay visible. */
#define FILE_HANDLER_EXPORT __attribute__((visibility("default")))

/* mbedTLS 2.x names the fallible SHA-256 calls *_ret; 3.x dropped the suffix. */
#if MBEDTLS_VERSION_MAJOR >= 3
#define sha256_starts mbedtls_sha256_starts
#define sha256_update mbedtls_sha256_update
#define sha256_finish mbedtls_sha256_finish
#else
#define sha256_starts mbedtls_sha256_starts_ret
#define sha256_update mbedtls_sha256_update_ret
#define sha256_finish mbedtls_sha256_finish_ret
#endif

#define FILE_CHUNK (64 * 1024)

typedef struct {
	char sha256[65];
	uint64_t size;
	uint64_t lines;
} file_stats_t;

/* What went wrong, for the job's error: a message and whether another
 * attempt may succeed. */
typedef struct {
	char message[DJOB_ERROR_MESSAGE_MAX];
	int retriable;
} file_error_t;

static int file_fail(file_error_t *fe, int retriable, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int file_fail(file_error_t *fe, int retriable, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fe->message, sizeof fe->message, fmt, ap);
	va_end(ap);
	fe->retriable = retriable;
	return -1;
}

/* Errors that a later attempt may not see again. */
static int errno_is_transient(int e)
{
	return e == EIO || e == EMFILE || e == ENFILE || e == ENOMEM || e == EINTR || e == EAGAIN;
}

/* Non-zero when `rel` climbs above its starting directory with "..",
 * judged on the text alone (symlinks are the realpath check's business). */
static int path_climbs_out(const char *rel)
{
	long depth = 0;
	const char *p = rel;

	while (*p) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (--depth < 0)
				return 1;
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			depth++;
		}
		p += n;
		while (*p == '/')
			p++;
	}
	return 0;
}

/*
 * Open the regular file `rel` under `root` (an absolute path without
 * symlinks and without a trailing '/', as realpath gives it) for reading.
 * Returns the descriptor, or -1 with fe set.
 */
static int file_open_beneath(const char *root, const char *rel, file_error_t *fe)
{
	char full[PATH_MAX], resolved[PATH_MAX];
	size_t rootlen = strlen(root);
	/* "/" is the only root realpath gives with a trailing '/'. */
	int root_is_slash = rootlen == 1;

	if (rel[0] == '\0')
		return file_fail(fe, 0, "payload.path must not be empty");
	if (rel[0] == '/')
		return file_fail(fe, 0, "payload.path must be relative to the file root: %s", rel);
	if (path_climbs_out(rel))
		return file_fail(fe, 0, "payload.path leaves the file root: %s", rel);
	if (snprintf(full, sizeof full, "%s/%s", root_is_slash ? "" : root, rel) >=
	    (int)sizeof full)
		return file_fail(fe, 0, "payload.path is too long");
	if (realpath(full, resolved) == NULL) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR)
			return file_fail(fe, 0, "File not found: %s", rel);
		return file_fail(fe, errno_is_transient(e), "Cannot resolve %s: %s", rel,
		                 strerror(e));
	}
	if (strcmp(resolved, root) == 0)
		return file_fail(fe, 0, "payload.path is not a regular file: %s", rel);
	/* The root plus '/' must prefix the resolved path; a bare prefix would
	 * let /data-other pass for /data. */
	if (!root_is_slash && (strncmp(resolved, root, rootlen) != 0 || resolved[rootlen] != '/'))
		return file_fail(fe, 0, "payload.path leaves the file root: %s", rel);

	int dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return file_fail(fe, 1, "Cannot open the file root: %s", strerror(errno));
	/* Walk the resolved path below the root. It has no symlinks now;
	 * O_NOFOLLOW on every component refuses one that appears meanwhile. */
	char *p = resolved + (root_is_slash ? 1 : rootlen + 1);
	int fd = -1;
	for (;;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		int flags = slash ? O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
		                  : O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
		int next = openat(dirfd, p, flags);
		int e = errno;
		close(dirfd);
		if (next < 0) {
			if (e == ELOOP || e == ENOTDIR)
				return file_fail(
					fe, 0, "payload.path changed while it was opened: %s", rel);
			if (e == ENOENT)
				return file_fail(fe, 0, "File not found: %s", rel);
			return file_fail(fe, errno_is_transient(e), "Cannot open %s: %s", rel,
			                 strerror(e));
		}
		if (!slash) {
			fd = next;
			break;
		}
		dirfd = next;
		p = slash + 1;
	}

	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return file_fail(fe, 0, "payload.path is not a regular file: %s", rel);
	}
	return fd;
}

/*
 * sha256, size and line count of what `fd` reads, in FILE_CHUNK pieces.
 * `job` (may be NULL) is polled between chunks. Returns 0, 1 when the job
 * should stop, or -1 with fe set.
 */
static int file_stats_fd(int fd, const djob_job_t *job, file_stats_t *out, file_error_t *fe)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char *buf = malloc(FILE_CHUNK);
	unsigned char digest[32];
	unsigned char last = '\n';
	mbedtls_sha256_context ctx;
	int rc = 0;

	if (buf == NULL)
		return file_fail(fe, 1, "Out of memory");
	memset(out, 0, sizeof *out);
	mbedtls_sha256_init(&ctx);
	sha256_starts(&ctx, 0);
	for (;;) {
		ssize_t n = read(fd, buf, FILE_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = file_fail(fe, errno_is_transient(errno), "Cannot read the file: %s",
			               strerror(errno));
			break;
		}
		if (n == 0)
			break;
		sha256_update(&ctx, buf, (size_t)n);
		out->size += (uint64_t)n;
		for (const unsigned char *p = buf, *end = buf + n;
		     (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
			out->lines++;
		last = buf[n - 1];
		if (job && djob_job_should_stop(job)) {
			rc = 1;
			break;
		}
	}
	sha256_finish(&ctx, digest);
	mbedtls_sha256_free(&ctx);
	free(buf);
	if (last != '\n')
		out->lines++;
	for (int i = 0; i < 32; i++) {
		out->sha256[2 * i] = hex[digest[i] >> 4];
		out->sha256[2 * i + 1] = hex[digest[i] & 0x0F];
	}
	out->sha256[64] = '\0';
	return rc;
}

/* The root the handler serves, set once at registration: one per process. */
static char file_root[PATH_MAX];

/* The handler. user_data is the root directory (a resolved absolute path). */
FILE_HANDLER_EXPORT djob_job_status_t file_handler(djob_job_t *job, void *user_data)
{
	const char *root = user_data;
	size_t len;
	const char *payload = djob_job_payload(job, &len);
	cJSON *doc = payload ? cJSON_ParseWithLength(payload, len) : NULL;
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(doc, "path");
	file_error_t fe = {{0}, 0};
	file_stats_t st;
	int rc = -1;

	if (!cJSON_IsString(path)) {
		cJSON_Delete(doc);
		djob_job_set_error(job, "payload.path must be a string");
		return DJOB_JOB_FAIL;
	}
	int fd = file_open_beneath(root, path->valuestring, &fe);
	if (fd >= 0) {
		rc = file_stats_fd(fd, job, &st, &fe);
		close(fd);
	}
	cJSON_Delete(doc);
	if (rc == 1) {
		djob_job_set_error(job, "Stopped before the file was read to the end");
		return DJOB_JOB_RETRY;
	}
	if (rc != 0) {
		djob_job_set_error(job, fe.message);
		return fe.retriable ? DJOB_JOB_RETRY : DJOB_JOB_FAIL;
	}

	char result[160];
	int n = snprintf(result, sizeof result, "{\"sha256\":\"%s\",\"size\":%llu,\"lines\":%llu}",
	                 st.sha256, (unsigned long long)st.size, (unsigned long long)st.lines);
	if (djob_job_set_result(job, result, (size_t)n, NULL) != 0) {
		djob_job_set_error(job, "Out of memory");
		return DJOB_JOB_RETRY;
	}
	return DJOB_JOB_DONE;
}

/* Register `file` on the worker with root `root` (resolved here; must be a
 * directory). Returns 0 or a negative DJOB_E* code with err set. */
FILE_HANDLER_EXPORT int file_handler_register(djob_worker_t *worker, const char *root,
                                              djob_error_t *err)
{
	char resolved[PATH_MAX];
	struct stat st;
	const char *why = NULL;

	if (root == NULL || root[0] == '\0')
		why = "DJOB_FILE_ROOT is not set: the file handler needs a root directory";
	else if (realpath(root, resolved) == NULL || stat(resolved, &st) != 0)
		why = "The file root DJOB_FILE_ROOT does not exist";
	else if (!S_ISDIR(st.st_mode))
		why = "The file root DJOB_FILE_ROOT is not a directory";
	if (why) {
		if (err) {
			err->code = DJOB_EINVAL;
			err->retriable = 0;
			snprintf(err->message, sizeof err->message, "%s", why);
		}
		return DJOB_EINVAL;
	}
	memcpy(file_root, resolved, sizeof file_root);
	return djob_worker_register(worker, "file", file_handler, file_root, err);
}

#ifndef HANDLER_NO_PLUGIN_ENTRY
/* The plugin ABI and entry point djob_worker_load_plugin looks for. */
DJOB_PLUGIN_ABI;

FILE_HANDLER_EXPORT int djob_plugin_register(djob_worker_t *worker, djob_error_t *err)
{
	return file_handler_register(worker, getenv("DJOB_FILE_ROOT"), err);
}
#endif
