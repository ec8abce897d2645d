#include "kube_cred.h"

#include "kubeconfig.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXEC_TIMEOUT_MS 30000
#define EXEC_MAX_OUTPUT (1u << 20)
#define EXEC_MAX_STDERR 2048
#define EXEC_RETRY_AFTER_FAILURE_MS 5000
#define EXEC_EXPIRY_MARGIN_S 10
#define TOKEN_MAX_BYTES (64u << 10)

extern char **environ;

struct exec_run {
	struct kube_cred *cred; /* NULL once the cred is closed */
	uv_process_t proc;
	uv_pipe_t out, err;
	uv_timer_t timer;
	int open_handles;
	int pending; /* exit, stdout EOF, stderr EOF */
	struct buf out_buf, err_buf;
	bool too_big, timed_out;
	int64_t exit_status;
	int term_signal;
	char rbuf[16384];
};

struct kube_cred {
	uv_loop_t *loop;
	const struct kubeconfig *kc;
	kube_cred_ready_cb on_ready;
	void *data;
	/* token file */
	char *file_token;
	uint64_t file_read_ms;
	bool file_stale;
	/* exec plugin */
	char *exec_token, *exec_cert, *exec_key;
	size_t exec_cert_len, exec_key_len;
	int64_t exec_expiry;
	bool exec_valid;
	struct exec_run *run;
	/* last failure */
	char *error;
	int error_code;
	uint64_t error_ms;
};

static void set_error(struct kube_cred *c, int code, char *msg)
{
	free(c->error);
	c->error = msg;
	c->error_code = code;
	c->error_ms = now_ms();
}

static void free_secret(char *s, size_t len)
{
	if (s) {
		memset(s, 0, len);
		free(s);
	}
}

static void clear_exec(struct kube_cred *c)
{
	free_secret(c->exec_token, c->exec_token ? strlen(c->exec_token) : 0);
	free_secret(c->exec_cert, c->exec_cert_len);
	free_secret(c->exec_key, c->exec_key_len);
	c->exec_token = c->exec_cert = c->exec_key = NULL;
	c->exec_cert_len = c->exec_key_len = 0;
	c->exec_valid = false;
}

/* ---- ExecCredential ---- */

static int pem_dup(const char *s, char **out)
{
	/* clientCertificateData / clientKeyData are PEM text (not base64) */
	if (!strstr(s, "-----BEGIN "))
		return -EINVAL;
	*out = xstrdup(s);
	return 0;
}

int kube_cred_parse_exec_output(const char *out, size_t len, const char *api_version,
				char **token, char **cert, char **key, int64_t *expiry,
				char *err, size_t errlen)
{
	*token = *cert = *key = NULL;
	*expiry = 0;
	json_error_t je;
	json_t *root = json_loadb(out, len, 0, &je);
	int rc = -EINVAL;
	if (!root || !json_is_object(root)) {
		snprintf(err, errlen, "output is not an ExecCredential JSON object%s%s",
			 root ? "" : ": ", root ? "" : je.text);
		goto done;
	}
	const char *kind = json_string_value(json_object_get(root, "kind"));
	const char *api = json_string_value(json_object_get(root, "apiVersion"));
	if (!kind || strcmp(kind, "ExecCredential") != 0) {
		snprintf(err, errlen, "output has kind \"%s\", expected \"ExecCredential\"",
			 kind ? kind : "");
		goto done;
	}
	if (api_version && (!api || strcmp(api, api_version) != 0)) {
		snprintf(err, errlen, "output has apiVersion \"%s\", expected \"%s\"",
			 api ? api : "", api_version);
		goto done;
	}
	json_t *st = json_object_get(root, "status");
	if (!json_is_object(st)) {
		snprintf(err, errlen, "output has no status");
		goto done;
	}
	const char *tok = json_string_value(json_object_get(st, "token"));
	const char *crt = json_string_value(json_object_get(st, "clientCertificateData"));
	const char *k = json_string_value(json_object_get(st, "clientKeyData"));
	json_t *exp = json_object_get(st, "expirationTimestamp");
	if (tok && !*tok)
		tok = NULL;
	if (!tok && !crt && !k) {
		snprintf(err, errlen,
			 "status has neither token nor clientCertificateData/clientKeyData");
		goto done;
	}
	if (!crt != !k) {
		snprintf(err, errlen, "status has %s but not %s",
			 crt ? "clientCertificateData" : "clientKeyData",
			 crt ? "clientKeyData" : "clientCertificateData");
		goto done;
	}
	if (tok && strpbrk(tok, "\r\n")) {
		snprintf(err, errlen, "status.token contains a line break");
		goto done;
	}
	if (exp && !json_is_null(exp)) {
		if (!json_is_string(exp) || parse_rfc3339(json_string_value(exp), expiry) != 0) {
			snprintf(err, errlen, "status.expirationTimestamp is not an RFC 3339 time");
			goto done;
		}
	}
	if (crt) {
		if (pem_dup(crt, cert) || pem_dup(k, key)) {
			free(*cert);
			*cert = NULL;
			snprintf(err, errlen, "clientCertificateData/clientKeyData must be PEM");
			goto done;
		}
	}
	if (tok)
		*token = xstrdup(tok);
	rc = 0;
done:
	json_decref(root);
	return rc;
}

/* ---- running the plugin ---- */

static void on_run_handle_closed(uv_handle_t *h)
{
	struct exec_run *r = h->data;
	if (--r->open_handles == 0) {
		buf_free(&r->out_buf);
		buf_free(&r->err_buf);
		free(r);
	}
}

static void run_close(struct exec_run *r)
{
	uv_close((uv_handle_t *)&r->proc, on_run_handle_closed);
	uv_close((uv_handle_t *)&r->out, on_run_handle_closed);
	uv_close((uv_handle_t *)&r->err, on_run_handle_closed);
	uv_close((uv_handle_t *)&r->timer, on_run_handle_closed);
}

static char *sanitize(const char *s, size_t len, size_t max)
{
	struct buf b = {0};
	for (size_t i = 0; i < len && b.len < max; i++) {
		unsigned char ch = (unsigned char)s[i];
		buf_append(&b, ch < 0x20 || ch == 0x7f ? " " : (const char *)&s[i], 1);
	}
	while (b.len && b.data[b.len - 1] == ' ')
		b.data[--b.len] = '\0';
	return b.data ? buf_steal(&b) : xstrdup("");
}

static void run_finished(struct exec_run *r)
{
	struct kube_cred *c = r->cred;
	uv_timer_stop(&r->timer);
	if (!c) {
		run_close(r);
		return;
	}
	c->run = NULL;
	const char *cmd = c->kc->exec->command;
	int code = 0;
	char *msg = NULL;
	if (r->timed_out) {
		code = -ETIMEDOUT;
		msg = xasprintf("exec plugin \"%s\": no answer within %d s (killed)", cmd,
				EXEC_TIMEOUT_MS / 1000);
	} else if (r->too_big) {
		code = -EMSGSIZE;
		msg = xasprintf("exec plugin \"%s\": output larger than %u bytes", cmd,
				EXEC_MAX_OUTPUT);
	} else if (r->term_signal || r->exit_status != 0) {
		char *e = sanitize(r->err_buf.data ? r->err_buf.data : "", r->err_buf.len, 512);
		code = -EACCES;
		if (r->term_signal)
			msg = xasprintf("exec plugin \"%s\": killed by signal %d%s%s", cmd,
					r->term_signal, *e ? ": " : "", e);
		else
			msg = xasprintf("exec plugin \"%s\": exited with status %lld%s%s", cmd,
					(long long)r->exit_status, *e ? ": " : "", e);
		free(e);
	} else {
		char perr[256];
		char *tok, *crt, *key;
		int64_t exp;
		if (kube_cred_parse_exec_output(r->out_buf.data ? r->out_buf.data : "",
						r->out_buf.len, c->kc->exec->api_version, &tok,
						&crt, &key, &exp, perr, sizeof(perr)) != 0) {
			code = -EACCES;
			msg = xasprintf("exec plugin \"%s\": %s", cmd, perr);
		} else {
			clear_exec(c);
			c->exec_token = tok;
			c->exec_cert = crt;
			c->exec_cert_len = crt ? strlen(crt) : 0;
			c->exec_key = key;
			c->exec_key_len = key ? strlen(key) : 0;
			c->exec_expiry = exp;
			c->exec_valid = true;
			free(c->error);
			c->error = NULL;
			c->error_code = 0;
		}
	}
	run_close(r);
	if (code) {
		log_warn("kube: %s", msg);
		set_error(c, code, msg);
	}
	c->on_ready(code, code ? c->error : NULL, c->data);
}

static void run_step(struct exec_run *r)
{
	if (--r->pending == 0)
		run_finished(r);
}

static void on_run_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	UNUSED(suggested);
	struct exec_run *r = h->data;
	b->base = r->rbuf;
	b->len = sizeof(r->rbuf);
}

static void on_run_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct exec_run *r = s->data;
	if (n < 0) {
		uv_read_stop(s);
		run_step(r);
		return;
	}
	if (s == (uv_stream_t *)&r->out) {
		if (r->out_buf.len + (size_t)n > EXEC_MAX_OUTPUT) {
			if (!r->too_big)
				uv_process_kill(&r->proc, SIGKILL);
			r->too_big = true;
			return;
		}
		buf_append(&r->out_buf, b->base, (size_t)n);
	} else if (r->err_buf.len < EXEC_MAX_STDERR) {
		size_t room = EXEC_MAX_STDERR - r->err_buf.len;
		buf_append(&r->err_buf, b->base, (size_t)n < room ? (size_t)n : room);
	}
}

static void on_run_exit(uv_process_t *p, int64_t status, int sig)
{
	struct exec_run *r = p->data;
	r->exit_status = status;
	r->term_signal = sig;
	run_step(r);
}

static void on_run_timeout(uv_timer_t *t)
{
	struct exec_run *r = t->data;
	r->timed_out = true;
	uv_process_kill(&r->proc, SIGKILL);
}

static char *base64(const char *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data, (int)len);
	return out;
}

static char *exec_info(const struct kubeconfig *kc)
{
	json_t *spec = json_pack("{s:b}", "interactive", 0);
	if (kc->exec->provide_cluster_info) {
		json_t *cl = json_pack("{s:s, s:b}", "server", kc->server,
				       "insecure-skip-tls-verify", kc->insecure);
		if (kc->ca_pem) {
			char *ca = base64(kc->ca_pem, kc->ca_len);
			json_object_set_new(cl, "certificate-authority-data", json_string(ca));
			free(ca);
		}
		json_object_set_new(spec, "cluster", cl);
	}
	json_t *info = json_pack("{s:s, s:s, s:o}", "apiVersion", kc->exec->api_version, "kind",
				 "ExecCredential", "spec", spec);
	char *s = json_dumps(info, JSON_COMPACT);
	json_decref(info);
	return s;
}

static int run_start(struct kube_cred *c)
{
	const struct kubeconfig_exec *ex = c->kc->exec;
	struct exec_run *r = xcalloc(1, sizeof(*r));
	r->cred = c;
	r->pending = 3;
	r->proc.data = r->out.data = r->err.data = r->timer.data = r;
	uv_pipe_init(c->loop, &r->out, 0);
	uv_pipe_init(c->loop, &r->err, 0);
	uv_timer_init(c->loop, &r->timer);
	r->open_handles = 4;

	size_t nargs = 0, nenv = 0, nextra = 0;
	while (ex->args[nargs])
		nargs++;
	while (environ && environ[nenv])
		nenv++;
	while (ex->env[nextra])
		nextra++;
	char **argv = xcalloc(nargs + 2, sizeof(char *));
	argv[0] = ex->command;
	for (size_t i = 0; i < nargs; i++)
		argv[i + 1] = ex->args[i];
	char **envp = xcalloc(nenv + nextra + 2, sizeof(char *));
	size_t n = 0;
	for (size_t i = 0; i < nenv; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		bool overridden = strncmp(environ[i], "KUBERNETES_EXEC_INFO=", 21) == 0;
		for (size_t j = 0; j < nextra && !overridden; j++)
			overridden = strncmp(ex->env[j], environ[i], nl) == 0 && ex->env[j][nl] == '=';
		if (!overridden)
			envp[n++] = environ[i];
	}
	for (size_t j = 0; j < nextra; j++)
		envp[n++] = ex->env[j];
	char *info = exec_info(c->kc);
	char *info_env = xasprintf("KUBERNETES_EXEC_INFO=%s", info);
	free(info);
	envp[n++] = info_env;

	uv_stdio_container_t stdio[3];
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&r->out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&r->err;
	uv_process_options_t opts = {0};
	opts.file = ex->command;
	opts.args = argv;
	opts.env = envp;
	opts.exit_cb = on_run_exit;
	opts.stdio = stdio;
	opts.stdio_count = 3;
	int rc = uv_spawn(c->loop, &r->proc, &opts);
	free(argv);
	free(envp);
	free(info_env);
	if (rc != 0) {
		r->cred = NULL;
		run_close(r);
		set_error(c, -EACCES,
			  xasprintf("exec plugin \"%s\": cannot run: %s", ex->command, uv_strerror(rc)));
		log_warn("kube: %s", c->error);
		return -EACCES;
	}
	uv_read_start((uv_stream_t *)&r->out, on_run_alloc, on_run_read);
	uv_read_start((uv_stream_t *)&r->err, on_run_alloc, on_run_read);
	uv_timer_start(&r->timer, on_run_timeout, EXEC_TIMEOUT_MS, 0);
	c->run = r;
	log_debug("kube: running exec credential plugin \"%s\"", ex->command);
	return 0;
}

/* ---- the public side ---- */

struct kube_cred *kube_cred_new(uv_loop_t *loop, const struct kubeconfig *kc,
				kube_cred_ready_cb on_ready, void *data)
{
	struct kube_cred *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->kc = kc;
	c->on_ready = on_ready;
	c->data = data;
	c->file_stale = true;
	return c;
}

static int read_token_file(struct kube_cred *c, const char **message)
{
	char *t = NULL;
	size_t len = 0;
	int rc = kubeconfig_read_file(c->kc->token_file, TOKEN_MAX_BYTES, &t, &len);
	while (rc == 0 && len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' '))
		t[--len] = '\0';
	if (rc == 0 && (len == 0 || strpbrk(t, "\r\n"))) {
		rc = -EINVAL;
	}
	if (rc == 0) {
		free_secret(c->file_token, c->file_token ? strlen(c->file_token) : 0);
		c->file_token = t;
		c->file_read_ms = now_ms();
		c->file_stale = false;
		return 0;
	}
	free_secret(t, len);
	set_error(c, -EACCES,
		  xasprintf("cannot read the token file %s: %s", c->kc->token_file,
			    rc == -EINVAL ? "empty or not a single line" : strerror(-rc)));
	if (c->file_token) {
		/* keep using the previous token; try again in a while */
		log_warn("kube: %s (keeping the previous token)", c->error);
		c->file_read_ms = now_ms();
		c->file_stale = false;
		return 0;
	}
	*message = c->error;
	return -EACCES;
}

int kube_cred_get(struct kube_cred *c, struct kube_creds *out, const char **message)
{
	const struct kubeconfig *kc = c->kc;
	memset(out, 0, sizeof(*out));
	*message = NULL;
	out->token = kc->token;
	out->cert_pem = kc->cert_pem;
	out->cert_len = kc->cert_len;
	out->key_pem = kc->key_pem;
	out->key_len = kc->key_len;

	if (kc->token_file) {
		if (c->file_stale || now_ms() - c->file_read_ms >= KUBE_CRED_TOKEN_FILE_TTL_MS) {
			int rc = read_token_file(c, message);
			if (rc)
				return rc;
		}
		out->token = c->file_token;
	}

	if (kc->exec) {
		int64_t now = (int64_t)time(NULL);
		if (c->exec_valid &&
		    (c->exec_expiry == 0 || now < c->exec_expiry - EXEC_EXPIRY_MARGIN_S)) {
			if (c->exec_token)
				out->token = c->exec_token;
			if (c->exec_cert) {
				out->cert_pem = c->exec_cert;
				out->cert_len = c->exec_cert_len;
				out->key_pem = c->exec_key;
				out->key_len = c->exec_key_len;
			}
			return 0;
		}
		if (c->run)
			return -EAGAIN;
		if (c->error_code && now_ms() - c->error_ms < EXEC_RETRY_AFTER_FAILURE_MS) {
			*message = c->error;
			return c->error_code;
		}
		int rc = run_start(c);
		if (rc) {
			*message = c->error;
			return rc;
		}
		return -EAGAIN;
	}
	return 0;
}

bool kube_cred_invalidate(struct kube_cred *c)
{
	bool changed = false;
	if (c->kc->exec) {
		if (c->exec_valid)
			changed = true;
		clear_exec(c);
		/* a fresh 401 deserves a fresh run, even right after a failure */
		c->error_code = 0;
	}
	if (c->kc->token_file) {
		c->file_stale = true;
		changed = true;
	}
	return changed;
}

void kube_cred_close(struct kube_cred *c)
{
	if (!c)
		return;
	if (c->run) {
		c->run->cred = NULL;
		uv_process_kill(&c->run->proc, SIGKILL);
	}
	clear_exec(c);
	free_secret(c->file_token, c->file_token ? strlen(c->file_token) : 0);
	free(c->error);
	free(c);
}
