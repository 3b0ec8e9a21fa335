/*
 * The example file handler (examples/handler_file.c) on fuzzed payloads,
 * in a sandbox: a fresh directory under $TMPDIR holding the file root and,
 * beside it, files the handler must never read (a secret, and a directory
 * whose name has the root's as a prefix), reachable from the root by "..",
 * by absolute paths and by symlinks. A completed job must report one of
 * the root's own files: its sha256 is looked up among theirs. The sandbox
 * is removed at exit.
 */
#define _GNU_SOURCE /* nftw */

#include "fuzz_handler.h"

#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

djob_job_status_t file_handler(djob_job_t *job, void *user_data);

int LLVMFuzzerInitialize(int *argc, char ***argv);

static char base[PATH_MAX];
static char root[PATH_MAX];

/* The regular files under the root and their sha256. */
static const struct {
	const char *path;
	const char *text;
} inside[] = {
	{"a.txt", "alpha\nbeta\n"},
	{"sub/b.txt", "no newline at end"},
	{"sub/deeper/c.csv", "x,y\n1,2\n3,4\n"},
	{"empty", ""},
	{"dir.with.dots/d", "dots\n"},
};
#define N_INSIDE (sizeof inside / sizeof inside[0])
static char inside_sha[N_INSIDE][65];

static void must(int ok, const char *what)
{
	if (!ok) {
		perror(what);
		abort();
	}
}

static void put_file(const char *dir, const char *rel, const char *text)
{
	char p[PATH_MAX * 2];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	FILE *f = fopen(p, "wb");
	must(f != NULL, p);
	fputs(text, f);
	fclose(f);
}

static void in(char *out, const char *dir, const char *rel)
{
	snprintf(out, PATH_MAX * 2, "%s/%s", dir, rel);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_sandbox(void)
{
	if (base[0])
		nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char tmpl[PATH_MAX], p[PATH_MAX * 2], q[PATH_MAX * 2];
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	snprintf(tmpl, sizeof tmpl, "%s/djob-fuzz-file-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	must(mkdtemp(tmpl) != NULL, "mkdtemp");
	must(realpath(tmpl, base) != NULL, "realpath");
	atexit(remove_sandbox);
	in(p, base, "root");
	must(mkdir(p, 0755) == 0, p);
	must(realpath(p, root) != NULL, "realpath");
	const char *dirs[] = {"sub", "sub/deeper", "dir.with.dots"};
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		in(p, root, dirs[i]);
		must(mkdir(p, 0755) == 0, p);
	}
	for (size_t i = 0; i < N_INSIDE; i++) {
		put_file(root, inside[i].path, inside[i].text);
		djob_sha256_hex(inside[i].text, strlen(inside[i].text), inside_sha[i]);
	}
	/* Outside: the secret, and root-other (a bare prefix of its path is
	 * the root's). */
	put_file(base, "secret.txt", "secret\n");
	in(p, base, "root-other");
	must(mkdir(p, 0755) == 0, p);
	put_file(p, "x.txt", "other\n");
	/* Links inside that lead in, and out. */
	in(p, root, "link-in");
	must(symlink("a.txt", p) == 0, p);
	in(p, root, "sub/link-up");
	must(symlink("../a.txt", p) == 0, p);
	in(p, root, "link-out");
	must(symlink("../secret.txt", p) == 0, p);
	in(p, root, "link-abs");
	in(q, base, "secret.txt");
	must(symlink(q, p) == 0, p);
	in(p, root, "link-dir-out");
	must(symlink("..", p) == 0, p);
	in(p, root, "link-other");
	must(symlink("../root-other", p) == 0, p);
	in(p, root, "link-loop");
	must(symlink("link-loop", p) == 0, p);
	in(p, root, "link-dangling");
	must(symlink("nowhere", p) == 0, p);
	/* Not regular files: a directory is there already; a FIFO must not
	 * block the handler. */
	in(p, root, "fifo");
	must(mkfifo(p, 0644) == 0, p);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	djob_job_t *job = fuzz_job_new("file", data, size, NULL);
	djob_job_status_t st = file_handler(job, root);
	cJSON *result = fuzz_check_outcome(job, st);

	if (result != NULL) {
		const cJSON *sha = cJSON_GetObjectItemCaseSensitive(result, "sha256");
		size_t i;
		FUZZ_ASSERT(cJSON_IsString(sha));
		for (i = 0; i < N_INSIDE; i++)
			if (strcmp(sha->valuestring, inside_sha[i]) == 0)
				break;
		if (i == N_INSIDE)
			fprintf(stderr, "read a file outside the root: sha256 %s\n",
			        sha->valuestring);
		FUZZ_ASSERT(i < N_INSIDE);
		FUZZ_ASSERT(fuzz_number(result, "size") == (double)strlen(inside[i].text));
		fuzz_number(result, "lines");
	}
	cJSON_Delete(result);
	djob_job_free(job);
	return 0;
}
