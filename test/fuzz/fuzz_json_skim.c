/* libFuzzer target: json_skim.c (walking list pages without building them)
 * and the informer's parse of a page's text (informer_list_page_text), the
 * path every listed object takes. Checked: no crash, leak, read past the
 * input or undefined behaviour; whatever jansson accepts as a document,
 * json_skim walks to its end, unless it holds a NUL byte (jansson 2.14
 * passes over a NUL between tokens; json_skim refuses it, as RFC 8259
 * does). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "informer.h"
#include "json_skim.h"
#include "log.h"

/* Walks every member and element down to depth levels; 0 or -EPROTO. */
static int walk(const char *s, size_t len, int depth)
{
	struct json_skim it;
	size_t p = 0;
	while (p < len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r'))
		p++;
	bool arr = p < len && s[p] == '[';
	if (json_skim_open(&it, s, len, arr ? '[' : '{') < 0)
		return -1;
	const char *key, *val;
	size_t klen, vlen;
	bool esc;
	int r;
	while ((r = arr ? json_skim_element(&it, &val, &vlen)
			: json_skim_member(&it, &key, &klen, &esc, &val, &vlen)) > 0) {
		if (!arr)
			json_decref(json_skim_key(key, klen, esc));
		if (depth < 8 && vlen && (val[0] == '{' || val[0] == '[') &&
		    walk(val, vlen, depth + 1) < 0)
			return -1;
	}
	return r < 0 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		log_set_level(LOG_ERROR);
		quiet = true;
	}
	/* an exact-size copy: ASan sees a read past the end */
	char *s = malloc(size ? size : 1);
	memcpy(s, data, size);
	json_error_t e;
	json_t *whole = json_loadb(s, size, 0, &e);
	int walked = walk(s, size, 0);
	if (whole && walked < 0 && !memchr(s, 0, size))
		abort();
	json_decref(whole);

	static const char *const keep[] = {"spec.replicas", "status.replicas", NULL};
	struct informer_opts o = {.api_version = "apps/v1", .kind = "Deployment", .keep = keep};
	struct informer *inf = informer_new(NULL, NULL, &o, NULL);
	informer_list_begin(inf);
	informer_list_page_text(inf, s, size);
	informer_list_end(inf, "1");
	informer_free(inf);
	free(s);
	return 0;
}
