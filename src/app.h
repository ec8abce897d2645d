/* The long-lived parts of one runboat process, passed explicitly to every
 * module that needs more than its own state. */
#ifndef RUNBOAT_APP_H
#define RUNBOAT_APP_H

#include <stdbool.h>
#include <uv.h>

#include "build.h"

struct config;
struct controller;
struct curl_uv;
struct github_client;
struct github_sync;
struct http_server;
struct hub;
struct index;
struct kube;
struct kubefiles_cache;
struct lease;
struct router;

struct app {
	uv_loop_t *loop;
	struct config *cfg; /* owned */
	struct router *router;
	struct http_server *http;
	struct curl_uv *curl;         /* for the GitHub client */
	struct kube *kube;            /* NULL when Kubernetes is not configured */
	char kube_error[512];         /* why kube is NULL */
	/* leader election ([kubernetes] leader_election): NULL when off */
	struct lease *lease;
	struct kube *lease_kube;      /* the Lease's own client (own rate limit) */
	char lease_identity[256];
	struct github_client *github; /* NULL if it could not be set up */
	struct github_sync *github_sync; /* NULL: no missed-webhook recovery */
	struct kubefiles_cache *kubefiles;
	struct index *index;
	struct controller *controller;
	struct hub *hub;
	struct build_links links;
	char *base_origin; /* scheme://host[:port] of base_url, for Origin checks */
	uint64_t started_ms;
	bool stopping;
};

#endif
