/* A controller that does nothing, for the benchmarks that serve runboat's
 * HTTP surface (api, streams, ui) over an index they fill themselves
 * (bench_stream, bench_dashboard): ready and leading, every action refused
 * with -ENOTSUP, no logs. Its functions take the place of controller.c at
 * link time; include this once, in the benchmark's one C file. */
#ifndef RUNBOAT_BENCH_FAKE_CONTROLLER_H
#define RUNBOAT_BENCH_FAKE_CONTROLLER_H

#include <errno.h>
#include <stdio.h>

#include "controller.h"
#include "util.h"

bool controller_ready(const struct controller *c, const char **reason)
{
	UNUSED(c);
	*reason = "";
	return true;
}

bool controller_leading(const struct controller *c, const char **reason)
{
	UNUSED(c);
	*reason = "";
	return true;
}

int controller_deploy(struct controller *c, const struct build_commit *commit,
		      controller_done_cb cb, void *data, char *err, size_t errlen)
{
	UNUSED(c), UNUSED(commit), UNUSED(cb), UNUSED(data);
	snprintf(err, errlen, "not in this benchmark");
	return -ENOTSUP;
}

int controller_trigger(struct controller *c, const char *repo, const char *branch, long pr,
		       controller_done_cb cb, void *data, char *err, size_t errlen)
{
	UNUSED(c), UNUSED(repo), UNUSED(branch), UNUSED(pr), UNUSED(cb), UNUSED(data);
	snprintf(err, errlen, "not in this benchmark");
	return -ENOTSUP;
}

#define FAKE_ACTION(fn)                                                                    \
	int fn(struct controller *c, const char *name, controller_done_cb cb, void *data,   \
	       char *err, size_t errlen)                                                    \
	{                                                                                  \
		UNUSED(c), UNUSED(name), UNUSED(cb), UNUSED(data);                         \
		snprintf(err, errlen, "not in this benchmark");                            \
		return -ENOTSUP;                                                           \
	}
FAKE_ACTION(controller_start_build)
FAKE_ACTION(controller_stop_build)
FAKE_ACTION(controller_reset_build)
FAKE_ACTION(controller_undeploy_build)
FAKE_ACTION(controller_force_undeploy_build)

int controller_rebuild_pr(struct controller *c, const char *repo, long pr, const char *user,
			  controller_done_cb cb, void *data, char *err, size_t errlen)
{
	UNUSED(c), UNUSED(repo), UNUSED(pr), UNUSED(user), UNUSED(cb), UNUSED(data);
	snprintf(err, errlen, "not in this benchmark");
	return -ENOTSUP;
}

size_t controller_undeploy_matching(struct controller *c, const struct index_filter *f)
{
	UNUSED(c), UNUSED(f);
	return 0;
}

int controller_log(struct controller *c, const char *name, const char *job_kind,
		   controller_log_cb cb, void *data, struct controller_log **out)
{
	UNUSED(c), UNUSED(name), UNUSED(job_kind), UNUSED(cb), UNUSED(data), UNUSED(out);
	return -ECANCELED;
}

void controller_cancel_log(struct controller_log *l)
{
	UNUSED(l);
}

#endif
