#include "assets.h"

#include <string.h>

#include "util.h"

const struct asset *assets_find(const char *path)
{
	for (size_t i = 0; i < assets_count; i++)
		if (strcmp(assets_table[i].path, path) == 0)
			return &assets_table[i];
	return NULL;
}

const char *assets_content_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{".html", "text/html; charset=utf-8"},
		{".js", "text/javascript; charset=utf-8"},
		{".mjs", "text/javascript; charset=utf-8"},
		{".css", "text/css; charset=utf-8"},
		{".json", "application/json"},
		{".svg", "image/svg+xml"},
		{".png", "image/png"},
		{".ico", "image/x-icon"},
		{".txt", "text/plain; charset=utf-8"},
		{".webmanifest", "application/manifest+json"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (str_ends_with(path, types[i].ext))
			return types[i].type;
	return "application/octet-stream";
}
