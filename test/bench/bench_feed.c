/* Memory of N builds as runboat holds them: the Deployments informer's
 * cache, the build index and each build's cached JSON, fed with N copies of
 * a Deployment as kube-apiserver returns it (test/bench/fixtures/
 * deployment.json: the default kubefiles' Deployment of a stopped build,
 * with its managedFields and status), renamed per build.
 *
 *   cmake --build build --target bench_feed && build/bench/bench_feed [N]   (10000)
 *
 * Three runs, each in a fresh child process: "whole objects" caches every
 * member but managedFields (runboat before the informer's keep list), "as
 * runboat" goes through feed.c's informers (only what build.c reads) from
 * one whole list (runboat before it listed page by page from the text),
 * "pages as text" as runboat lists now: pages of 500 as JSON text, one at
 * a time, each item parsed as the cache keeps it.
 * Printed: heap in use (mallinfo2) per build, VmRSS, and the time to
 * apply the list. Jobs are not included (one or two per build, smaller). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "feed.h"
#include "index.h"
#include "informer.h"
#include "log.h"
#include "util.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A "VmXXX:" line of /proc/self/status (field "VmRSS", "VmHWM"), in KiB;
 * -1 if it cannot be read. */
static long vm_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t n = strlen(field);
	long v = -1;
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static long vm_rss_kib(void)
{
	return vm_kib("VmRSS");
}

static long vm_hwm_kib(void)
{
	return vm_kib("VmHWM");
}

static const struct build_links LINKS = {"https://runboat.example", "runboat.example",
					 "https://github.com"};

/* Renamed copies first..first+n-1 of the fixture in a list. */
static json_t *make_list_from(const json_t *fixture, size_t first, size_t n)
{
	json_t *items = json_array();
	for (size_t i = first; i < first + n; i++) {
		json_t *d = json_deep_copy(fixture);
		char name[40], dname[48], uid[40], rv[24];
		snprintf(name, sizeof name, "b%08zx%024zx", i * 2654435761u % 0xffffffffu, i);
		snprintf(dname, sizeof dname, "%s-odoo", name);
		snprintf(uid, sizeof uid, "00000000-0000-0000-0000-%012zx", i);
		snprintf(rv, sizeof rv, "%zu", 1000 + i);
		json_t *md = json_object_get(d, "metadata");
		json_object_set_new(md, "name", json_string(dname));
		json_object_set_new(md, "uid", json_string(uid));
		json_object_set_new(md, "resourceVersion", json_string(rv));
		json_object_set_new(json_object_get(md, "labels"), BUILD_LABEL, json_string(name));
		json_t *tpl = json_object_get(json_object_get(d, "spec"), "template");
		json_object_set_new(json_object_get(json_object_get(tpl, "metadata"), "labels"),
				    BUILD_LABEL, json_string(name));
		json_array_append_new(items, d);
	}
	return json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", "apps/v1", "kind",
			 "DeploymentList", "metadata", "resourceVersion", "99999", "items", items);
}

static json_t *make_list(const json_t *fixture, size_t n)
{
	return make_list_from(fixture, 0, n);
}

#define PAGE 500

/* "as runboat now": the pages' JSON text, one page at a time (as
 * kube_list hands them over), through the feed's informers, which parse
 * each item as they keep it (informer_list_page_text). */
static void run_text(const json_t *fixture, size_t n)
{
	malloc_trim(0);
	size_t heap0 = mallinfo2().uordblks;
	long rss0 = vm_rss_kib();
	struct index *idx = index_new();
	struct feed *feed = feed_new(NULL, NULL, "runboat-builds", idx, NULL, NULL);
	struct informer *inf = feed_deployments(feed);
	double busy = 0;
	size_t bytes = 0;
	informer_list_begin(inf);
	int rc = 0;
	for (size_t first = 0; first < n && rc == 0; first += PAGE) {
		json_t *page = make_list_from(fixture, first, n - first < PAGE ? n - first : PAGE);
		char *text = json_dumps(page, JSON_COMPACT);
		json_decref(page);
		bytes += strlen(text);
		double t0 = now_s();
		rc = informer_list_page_text(inf, text, strlen(text));
		busy += now_s() - t0;
		free(text);
	}
	double t0 = now_s();
	if (rc == 0)
		rc = informer_list_end(inf, "99999");
	busy += now_s() - t0;
	const struct build **all = NULL;
	size_t nb = index_list(idx, &(struct index_filter){0}, INDEX_SORT_DESC, &all);
	for (size_t i = 0; i < nb; i++) {
		size_t len;
		build_json_text(all[i], &LINKS, &len);
	}
	free(all);
	size_t heap1 = mallinfo2().uordblks;
	long rss1 = vm_rss_kib(), hwm = vm_hwm_kib();
	malloc_trim(0);
	long rss2 = vm_rss_kib();
	printf("  %-14s %zu builds (rc %d): heap %.1f MiB (%.1f KiB per build), VmRSS +%.1f MiB "
	       "(+%.1f after malloc_trim), VmHWM %.1f MiB; %.1f MB of page text applied in %.0f ms\n",
	       "pages as text:", nb, rc, (double)(heap1 - heap0) / 1048576.0,
	       (double)(heap1 - heap0) / 1024.0 / (double)n, (double)(rss1 - rss0) / 1024.0,
	       (double)(rss2 - rss0) / 1024.0, (double)hwm / 1024.0, (double)bytes / 1e6,
	       busy * 1000);
	fflush(stdout);
}

/* "whole objects": the index fed as feed.c does, from an informer that
 * keeps everything but managedFields. */
static void on_add(struct informer *inf, json_t *obj, void *data)
{
	UNUSED(inf);
	struct build *b = build_from_deployment(obj, NULL, 0);
	if (b)
		index_upsert(data, b);
}


static void run(const json_t *fixture, size_t n, bool as_runboat)
{
	malloc_trim(0);
	size_t heap0 = mallinfo2().uordblks;
	long rss0 = vm_rss_kib();
	json_t *list = make_list(fixture, n); /* freed before heap1 is read */
	struct index *idx = index_new();
	struct feed *feed = NULL;
	struct informer *inf;
	if (as_runboat) {
		feed = feed_new(NULL, NULL, "runboat-builds", idx, NULL, NULL);
		inf = feed_deployments(feed);
	} else {
		struct informer_opts o = {.api_version = "apps/v1", .kind = "Deployment",
					  .namespace = "runboat-builds", .label_selector = BUILD_LABEL};
		struct informer_callbacks cb = {.on_add = on_add, .data = idx};
		inf = informer_new(NULL, NULL, &o, &cb);
	}
	double t0 = now_s();
	int rc = informer_replace(inf, list);
	double t1 = now_s();
	/* the encodings the hub caches as builds arrive */
	const struct build **all = NULL;
	size_t nb = index_list(idx, &(struct index_filter){0}, INDEX_SORT_DESC, &all);
	for (size_t i = 0; i < nb; i++) {
		size_t len;
		build_json_text(all[i], &LINKS, &len);
	}
	free(all);
	json_decref(list);
	malloc_trim(0);
	size_t heap1 = mallinfo2().uordblks;
	long rss1 = vm_rss_kib();
	printf("  %-14s %zu builds (replace rc %d): heap %.1f MiB (%.1f KiB per build), "
	       "VmRSS +%.1f MiB; list applied in %.0f ms\n",
	       as_runboat ? "as runboat:" : "whole objects:", nb, rc,
	       (double)(heap1 - heap0) / 1048576.0, (double)(heap1 - heap0) / 1024.0 / (double)n,
	       (double)(rss1 - rss0) / 1024.0, (t1 - t0) * 1000);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000;
	if (n == 0 || n > 1000000)
		n = 10000;
	log_set_level(LOG_ERROR);
	const char *path = "test/bench/fixtures/deployment.json";
	json_error_t e;
	json_t *fixture = json_load_file(path, 0, &e);
	if (!fixture) {
		fprintf(stderr, "%s: %s (run from the source tree)\n", path, e.text);
		return 1;
	}
	char *text = json_dumps(fixture, JSON_COMPACT);
	printf("bench_feed: %zu Deployments of %zu bytes of JSON each\n", n, strlen(text));
	free(text);
	for (int mode = 0; mode < 3; mode++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			if (mode == 2)
				run_text(fixture, n);
			else
				run(fixture, n, mode == 1);
			_exit(0);
		}
		waitpid(pid, NULL, 0);
	}
	json_decref(fixture);
	return 0;
}
