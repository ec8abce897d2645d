/* libFuzzer target: kubeconfig_parse on arbitrary bytes (YAML or JSON),
 * with no context and with a named one. Files it names are read relative to
 * a directory that does not exist. Checked: no crash, leak or undefined
 * behaviour; an error always has a message; a parsed kubeconfig has a
 * server. */
#include <stdint.h>
#include <stdlib.h>

#include "kubeconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const contexts[] = {NULL, "ctx"};
	for (size_t i = 0; i < 2; i++) {
		char err[512] = "";
		struct kubeconfig *kc = kubeconfig_parse("/nonexistent/fuzz/kubeconfig",
							 (const char *)data, size, contexts[i], err,
							 sizeof err);
		if (!kc && !err[0])
			abort();
		if (kc && (!kc->server || !kc->server[0]))
			abort();
		kubeconfig_free(kc);
	}
	return 0;
}
