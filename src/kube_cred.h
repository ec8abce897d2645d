/* Credentials for the Kubernetes API at run time: the fixed token or client
 * certificate of a kubeconfig, a token file re-read when it rotates (the
 * in-cluster service account token), and exec credential plugins
 * (client.authentication.k8s.io), run asynchronously with uv_spawn, cached
 * until they expire, re-run on expiry or after a 401. */
#ifndef RUNBOAT_KUBE_CRED_H
#define RUNBOAT_KUBE_CRED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kube_cred;
struct kubeconfig;

/* What to present to the API server; borrowed from the kube_cred, valid
 * until the next kube_cred_* call. NULL fields are absent. */
struct kube_creds {
	const char *token;
	const char *cert_pem;
	size_t cert_len;
	const char *key_pem;
	size_t key_len;
};

/* Called when an exec plugin run finishes: err 0 (kube_cred_get now
 * succeeds) or negative with message (borrowed, for this call only). */
typedef void (*kube_cred_ready_cb)(int err, const char *message, void *data);

/* kc is borrowed and must outlive the kube_cred. */
struct kube_cred *kube_cred_new(uv_loop_t *loop, const struct kubeconfig *kc,
				kube_cred_ready_cb on_ready, void *data);
/* Current credentials: returns 0 and fills out; -EAGAIN when an exec plugin
 * was started or is running (on_ready follows, never from inside this call);
 * or another negative errno with *message (borrowed) when they cannot be
 * obtained (a plugin that failed less than 5 seconds ago is not re-run). */
int kube_cred_get(struct kube_cred *c, struct kube_creds *out, const char **message);
/* The server refused the credentials (401): forget the exec plugin's cached
 * result and re-read the token file at the next kube_cred_get. Returns true
 * if that may change what kube_cred_get gives (so a retry makes sense). */
bool kube_cred_invalidate(struct kube_cred *c);
/* Frees c; a running plugin is killed (its handles close on the loop). */
void kube_cred_close(struct kube_cred *c);

/* Parses an exec plugin's stdout (an ExecCredential of api_version).
 * Returns 0 with *token, or *cert and *key, (owned by the caller) and *expiry
 * (epoch seconds, 0 if none), or -EINVAL with a message in err. */
int kube_cred_parse_exec_output(const char *out, size_t len, const char *api_version,
				char **token, char **cert, char **key, int64_t *expiry,
				char *err, size_t errlen);

/* Seconds a token file is trusted before it is read again. */
#define KUBE_CRED_TOKEN_FILE_TTL_MS 60000

#endif
