/* The files of web/, embedded at build time (cmake/embed.cmake). */
#ifndef RUNBOAT_ASSETS_H
#define RUNBOAT_ASSETS_H

#include <stddef.h>

struct asset {
	const char *path; /* "/index.html" */
	const unsigned char *data;
	size_t len;
	const char *etag; /* quoted strong ETag */
};

extern const struct asset assets_table[];
extern const size_t assets_count;

/* The asset at path ("/app.js"), or NULL. */
const struct asset *assets_find(const char *path);
/* Content type from the file extension. */
const char *assets_content_type(const char *path);

#endif
