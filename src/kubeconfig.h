/* Where the Kubernetes API server is and how to authenticate to it: a
 * kubeconfig file (YAML) or the in-cluster service account. Pure parsing and
 * file reading (done once at startup); the runtime side of credentials
 * (token files that rotate, exec plugins) is kube_cred. */
#ifndef RUNBOAT_KUBECONFIG_H
#define RUNBOAT_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* users[].user.exec of a kubeconfig (client.authentication.k8s.io/v1 or
 * v1beta1). */
struct kubeconfig_exec {
	char *api_version;
	char *command;   /* resolved against the kubeconfig's directory when
	                  * relative and containing a '/' */
	char **args;     /* NULL-terminated */
	char **env;      /* NULL-terminated "NAME=value" */
	bool provide_cluster_info;
};

struct kubeconfig {
	char *path;         /* the file it came from, or NULL (in-cluster) */
	char *context;      /* the context name used, or NULL (in-cluster) */
	char *server;       /* "https://host:port", never NULL */
	char *namespace;    /* the context's namespace, or NULL */
	/* TLS: PEM bytes read from *-data (base64 decoded) or from files. */
	char *ca_pem;       /* NULL: the system CAs */
	size_t ca_len;
	bool insecure;      /* insecure-skip-tls-verify */
	char *cert_pem;     /* client certificate, or NULL */
	size_t cert_len;
	char *key_pem;      /* client key, or NULL */
	size_t key_len;
	/* Bearer token: a fixed one, and/or a file re-read when it rotates. */
	char *token;
	char *token_file;
	struct kubeconfig_exec *exec; /* NULL if none */
	/* Basic auth (still accepted by some API servers). */
	char *username;
	char *password;
};

/* Parses a kubeconfig held in memory (YAML or JSON). path is used to name
 * the file in errors and to resolve relative file references (it is not
 * read). context NULL or "" means current-context. Returns a new kubeconfig
 * owned by the caller, or NULL with a message naming the file and what is
 * wrong in err. Files referenced (certificate-authority, client-certificate,
 * client-key) are read; tokenFile is read once to check it. */
struct kubeconfig *kubeconfig_parse(const char *path, const char *data, size_t len,
				    const char *context, char *err, size_t errlen);

/* Reads and parses a kubeconfig file. As kubeconfig_parse. */
struct kubeconfig *kubeconfig_load(const char *path, const char *context, char *err,
				   size_t errlen);

/* The in-cluster service account: KUBERNETES_SERVICE_HOST/PORT and sa_dir
 * (NULL: /var/run/secrets/kubernetes.io/serviceaccount) holding token, ca.crt
 * and namespace. The token is then a token_file (re-read when it rotates). */
struct kubeconfig *kubeconfig_in_cluster(const char *sa_dir, char *err, size_t errlen);

/* Where the in-cluster service account files are read from instead of
 * /var/run/secrets/kubernetes.io/serviceaccount when set (tests, or a token
 * projected elsewhere). */
#define KUBECONFIG_SA_DIR_ENV "RUNBOAT_SERVICE_ACCOUNT_DIR"

/* Selection order: explicit_path if not NULL/empty, else the first existing
 * file of $KUBECONFIG (a ':' list), else ~/.kube/config if it exists, else the
 * in-cluster service account (in $RUNBOAT_SERVICE_ACCOUNT_DIR when set). */
struct kubeconfig *kubeconfig_resolve(const char *explicit_path, const char *context,
				      char *err, size_t errlen);

void kubeconfig_free(struct kubeconfig *kc);

/* Reads a whole regular file of at most max bytes into a NUL-terminated
 * string owned by the caller. Returns 0, or a negative errno (-EFBIG when too
 * large, -EINVAL when not a regular file). Used for small local files only. */
int kubeconfig_read_file(const char *path, size_t max, char **out, size_t *len);

#endif
