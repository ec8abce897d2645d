/* libFuzzer target: the TOML configuration loader, end to end
 * (toml_json.cc, then config.c's checks), on arbitrary bytes. Relative
 * paths resolve against a fresh directory holding a minimal kubefiles/, so
 * inputs can get past the [build] checks. Checked: no crash, hang, leak or
 * undefined behaviour; an error is exactly one line naming the file; a
 * loaded configuration has its two required values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "log.h"
#include "toml_json.h"
#include "util.h"

static char dir[] = "/tmp/runboat-fuzz-toml-XXXXXX";

static void setup(void)
{
	log_set_level(LOG_OFF);
	if (!mkdtemp(dir))
		abort();
	char path[256];
	snprintf(path, sizeof path, "%s/kubefiles", dir);
	mkdir(path, 0755);
	static const char *const modes[] = {"deployment", "initialize", "cleanup"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/kubefiles/%s.yaml", dir, modes[i]);
		FILE *f = fopen(path, "w");
		if (!f)
			abort();
		fputs("# fuzz\n", f);
		fclose(f);
	}
	/* secrets and kubeconfigs are read from the environment too */
	unsetenv(CONFIG_ENV_ADMIN_PASSWORD);
	unsetenv(CONFIG_ENV_GITHUB_TOKEN);
	unsetenv(CONFIG_ENV_WEBHOOK_SECRET);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	/* config_load_string reads a C string: a NUL ends the document there,
	 * so the TOML layer gets the bytes with their NULs directly too */
	char err[1024] = "";
	json_t *doc = toml_json_parse_string((const char *)data, size, "fuzz.toml", NULL, err,
					     sizeof err);
	if (!doc && (strncmp(err, "fuzz.toml:", 10) != 0 || strchr(err, '\n')))
		abort();
	json_decref(doc);

	char *text = xstrndup((const char *)data, size);
	err[0] = '\0';
	struct config *c = config_load_string(text, "fuzz.toml", dir, err, sizeof err);
	free(text);
	if (!c) {
		if (strncmp(err, "fuzz.toml:", 10) != 0 || strchr(err, '\n'))
			abort();
	} else if (!c->kubernetes.namespace || !c->build.domain || !c->build.kubefiles) {
		abort();
	}
	config_free(c);
	return 0;
}
