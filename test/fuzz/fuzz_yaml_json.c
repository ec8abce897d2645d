/* libFuzzer target: YAML to JSON (yaml_json.c), the parser of rendered
 * kubefiles and of kubeconfig files. Checked: no crash, leak or undefined
 * behaviour; an error always has a message; a parsed stream is an array of
 * documents that serializes to JSON, and parse_one agrees with
 * parse_stream. */
#include <stdint.h>
#include <stdlib.h>

#include "yaml_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256] = "";
	json_t *docs = yaml_json_parse_stream((const char *)data, size, err, sizeof err);
	if (!docs) {
		if (!err[0])
			abort();
	} else {
		if (!json_is_array(docs))
			abort();
		char *s = json_dumps(docs, JSON_ENCODE_ANY | JSON_COMPACT);
		if (!s)
			abort(); /* every string is valid UTF-8, every number finite */
		free(s);
	}
	char err1[256] = "";
	json_t *one = yaml_json_parse_one((const char *)data, size, err1, sizeof err1);
	if (one) {
		if (!docs || json_array_size(docs) != 1 || !json_equal(one, json_array_get(docs, 0)))
			abort();
	} else if (!err1[0] || (docs && json_array_size(docs) == 1)) {
		abort();
	}
	json_decref(one);
	json_decref(docs);
	return 0;
}
