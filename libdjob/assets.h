/*
 * Files djob-api serves from memory: the dashboard under /ui/ and the
 * OpenAPI description at /openapi.json. They are built into the library by
 * libdjob/embed.py from the list `djob_assets` in libdjob/meson.build, so a
 * daemon needs no file beside it and fetches nothing at run time.
 */
#ifndef DJOB_ASSETS_H
#define DJOB_ASSETS_H

#include <stddef.h>

typedef struct {
	const char *path;         /* URL path, "/ui/app.js" */
	const char *content_type; /* "text/javascript; charset=utf-8" */
	const char *etag;         /* quoted, "\"0123456789abcdef\"" */
	const unsigned char *data;
	size_t len;
} djob_asset_t;

/* The generated table, ended by a row whose path is NULL. */
extern const djob_asset_t djob_assets[];

/* The file served at `path` (exact match; "/ui/" is the dashboard's page),
 * or NULL. */
const djob_asset_t *djob_asset_find(const char *path);

#endif
