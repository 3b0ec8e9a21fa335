/* Look up a built-in file by URL path (assets.h). */
#include "assets.h"

#include <string.h>

const djob_asset_t *djob_asset_find(const char *path)
{
	if (!path)
		return NULL;
	for (const djob_asset_t *a = djob_assets; a->path; a++)
		if (strcmp(a->path, path) == 0)
			return a;
	return NULL;
}
