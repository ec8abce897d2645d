/* Kubernetes objects as runboat meets them, for the unit tests that feed
 * the informers (test_feed, test_controller). Include once per test file. */
#ifndef RUNBOAT_TEST_K8S_OBJECTS_H
#define RUNBOAT_TEST_K8S_OBJECTS_H

#include <jansson.h>
#include <stdlib.h>

#include "build.h"

/* A Deployment of build as the default kubefiles render it (the labels,
 * annotations and finalizer that build_from_deployment reads), initialized
 * (init-status "succeeded"), with replicas (0: stopped), at resourceVersion
 * rv, in namespace "ns". */
static json_t *deployment(const char *build, const char *rv, int replicas, const char *sha)
{
	json_t *d = json_pack(
		"{s:s,s:s,s:{s:s+,s:s,s:s,s:s,s:s,s:{s:s,s:s},s:{s:s,s:s,s:s,s:s,s:s,s:s},"
		"s:[s]},s:{s:i},s:{s:i,s:i,s:i}}",
		"kind", "Deployment", "apiVersion", "apps/v1", "metadata", "name", build, "-odoo",
		"namespace", "ns", "uid", "8d3c7c1e-5d0e-4b0a-9d6e-1c2b3a4d5e6f", "resourceVersion", rv,
		"creationTimestamp", "2021-11-28T10:20:30Z", "labels", "app.kubernetes.io/managed-by",
		"runboat", BUILD_LABEL, build, "annotations", BUILD_ANN_REPO, "oca/mis-builder",
		BUILD_ANN_TARGET_BRANCH, "16.0", BUILD_ANN_PR, "", BUILD_ANN_GIT_COMMIT, sha,
		BUILD_ANN_INIT_STATUS, "succeeded", BUILD_ANN_LAST_SCALED, "2021-11-28T11:00:00Z",
		"finalizers", BUILD_FINALIZER, "spec", "replicas", replicas, "status", "replicas",
		replicas, "readyReplicas", replicas, "availableReplicas", replicas);
	if (!d)
		abort();
	return d;
}

#endif
