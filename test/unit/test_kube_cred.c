/* Runtime credentials: ExecCredential parsing, exec plugins run with
 * uv_spawn (caching, expiry, invalidation, failures), token file rotation. */
#include "kube_cred.h"
#include "kubeconfig.h"
#include "util.h"
#include "unit.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[64];

static void test_parse(void)
{
	char err[256];
	char *tok, *crt, *key;
	int64_t exp;
	const char *v1 = "client.authentication.k8s.io/v1";
	const char *ok = "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
			 "\"status\":{\"token\":\"abc\",\"expirationTimestamp\":\"2030-01-02T03:04:05Z\"}}";
	CHECK_INT(kube_cred_parse_exec_output(ok, strlen(ok), v1, &tok, &crt, &key, &exp, err,
					      sizeof(err)), 0);
	CHECK_STR(tok, "abc");
	CHECK(crt == NULL && key == NULL);
	CHECK_INT(exp, 1893553445);
	free(tok);

	const char *certs = "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
			    "\"status\":{\"clientCertificateData\":\"-----BEGIN CERTIFICATE-----\\nA\\n-----END CERTIFICATE-----\\n\","
			    "\"clientKeyData\":\"-----BEGIN EC PRIVATE KEY-----\\nB\\n-----END EC PRIVATE KEY-----\\n\"}}";
	CHECK_INT(kube_cred_parse_exec_output(certs, strlen(certs), v1, &tok, &crt, &key, &exp, err,
					      sizeof(err)), 0);
	CHECK(tok == NULL);
	CHECK_STR(crt, "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n");
	CHECK_STR(key, "-----BEGIN EC PRIVATE KEY-----\nB\n-----END EC PRIVATE KEY-----\n");
	CHECK_INT(exp, 0);
	free(crt);
	free(key);

	struct {
		const char *out;
		const char *err;
	} bad[] = {
		{"nope", "output is not an ExecCredential JSON object: "},
		{"{\"kind\":\"Foo\"}", "output has kind \"Foo\", expected \"ExecCredential\""},
		{"{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1beta1\"}",
		 "output has apiVersion \"client.authentication.k8s.io/v1beta1\", expected "
		 "\"client.authentication.k8s.io/v1\""},
		{"{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\"}",
		 "output has no status"},
		{"{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":{}}",
		 "status has neither token nor clientCertificateData/clientKeyData"},
		{"{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":"
		 "{\"clientKeyData\":\"x\"}}",
		 "status has clientKeyData but not clientCertificateData"},
		{"{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":"
		 "{\"token\":\"t\",\"expirationTimestamp\":\"tomorrow\"}}",
		 "status.expirationTimestamp is not an RFC 3339 time"},
		{"{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":"
		 "{\"token\":\"a\\nb\"}}",
		 "status.token contains a line break"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = '\0';
		CHECK_INT(kube_cred_parse_exec_output(bad[i].out, strlen(bad[i].out), v1, &tok, &crt,
						      &key, &exp, err, sizeof(err)), -EINVAL);
		CHECK(strncmp(err, bad[i].err, strlen(bad[i].err)) == 0);
		if (strncmp(err, bad[i].err, strlen(bad[i].err)) != 0)
			fprintf(stderr, "  got: %s\n", err);
	}
}

struct ready {
	int calls;
	int err;
	char message[512];
};

static void on_ready(int err, const char *message, void *data)
{
	struct ready *r = data;
	r->calls++;
	r->err = err;
	snprintf(r->message, sizeof(r->message), "%s", message ? message : "");
}

static char *write_script(const char *name, const char *body)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	fputs(body, f);
	fclose(f);
	chmod(p, 0755);
	return p;
}

static int read_count(void)
{
	char *p = xasprintf("%s/count", dir), *s = NULL;
	size_t len;
	int n = kubeconfig_read_file(p, 64, &s, &len) == 0 ? atoi(s) : 0;
	free(s);
	free(p);
	return n;
}

static struct kubeconfig *exec_config(const char *script, const char *exp)
{
	struct kubeconfig *kc = xcalloc(1, sizeof(*kc));
	kc->server = xstrdup("https://127.0.0.1:1");
	kc->exec = xcalloc(1, sizeof(*kc->exec));
	kc->exec->api_version = xstrdup("client.authentication.k8s.io/v1");
	kc->exec->command = xstrdup(script);
	kc->exec->args = xcalloc(2, sizeof(char *));
	kc->exec->args[0] = xstrdup("arg-one");
	kc->exec->env = xcalloc(3, sizeof(char *));
	kc->exec->env[0] = xasprintf("DIR=%s", dir);
	kc->exec->env[1] = xasprintf("EXP=%s", exp);
	return kc;
}

static const char *PLUGIN =
	"#!/bin/sh\n"
	"n=$(cat \"$DIR/count\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$DIR/count\"\n"
	"case \"$KUBERNETES_EXEC_INFO\" in *'\"interactive\":false'*) ;; *) exit 9;; esac\n"
	"printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
	"\"status\":{\"token\":\"%s-%s\",\"expirationTimestamp\":\"%s\"}}' \"$1\" $n \"$EXP\"\n";

static void wait_ready(uv_loop_t *loop, struct ready *r, int target)
{
	while (r->calls < target && uv_run(loop, UV_RUN_ONCE))
		;
}

static void test_exec_plugin(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	char *script = write_script("plugin.sh", PLUGIN);
	struct kubeconfig *kc = exec_config(script, "2099-01-01T00:00:00Z");
	struct ready r = {0};
	struct kube_cred *c = kube_cred_new(&loop, kc, on_ready, &r);
	struct kube_creds cr;
	const char *msg;
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EAGAIN);
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EAGAIN); /* still running: no second run */
	CHECK_INT(r.calls, 0);
	wait_ready(&loop, &r, 1);
	CHECK_INT(r.err, 0);
	CHECK_INT(kube_cred_get(c, &cr, &msg), 0);
	CHECK_STR(cr.token, "arg-one-1"); /* args and env reached the plugin */
	CHECK_INT(kube_cred_get(c, &cr, &msg), 0); /* cached */
	CHECK_STR(cr.token, "arg-one-1");
	CHECK_INT(read_count(), 1);
	CHECK(kube_cred_invalidate(c));
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EAGAIN);
	wait_ready(&loop, &r, 2);
	CHECK_INT(kube_cred_get(c, &cr, &msg), 0);
	CHECK_STR(cr.token, "arg-one-2");
	kube_cred_close(c);
	kubeconfig_free(kc);

	/* an expired credential is fetched again at every use */
	kc = exec_config(script, "2001-01-01T00:00:00Z");
	c = kube_cred_new(&loop, kc, on_ready, &r);
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EAGAIN);
	wait_ready(&loop, &r, 3);
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EAGAIN);
	wait_ready(&loop, &r, 4);
	CHECK_INT(read_count(), 4);
	/* closed while running: the child is killed, no callback */
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EAGAIN);
	kube_cred_close(c);
	kubeconfig_free(kc);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(r.calls, 4);
	CHECK_INT(uv_loop_close(&loop), 0);
	free(script);
}

static void test_exec_failures(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	char *script = write_script("fail.sh", "#!/bin/sh\necho 'boom:\tno credentials' >&2\nexit 3\n");
	struct kubeconfig *kc = exec_config(script, "");
	struct ready r = {0};
	struct kube_cred *c = kube_cred_new(&loop, kc, on_ready, &r);
	struct kube_creds cr;
	const char *msg = NULL;
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EAGAIN);
	wait_ready(&loop, &r, 1);
	CHECK_INT(r.err, -EACCES);
	char *expect = xasprintf("exec plugin \"%s\": exited with status 3: boom: no credentials",
				 script);
	CHECK_STR(r.message, expect);
	/* not re-run at once */
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EACCES);
	CHECK_STR(msg, expect);
	free(expect);
	kube_cred_close(c);
	kubeconfig_free(kc);

	/* bad output */
	char *garbage = write_script("garbage.sh", "#!/bin/sh\necho '{\"kind\":\"Nope\"}'\n");
	kc = exec_config(garbage, "");
	c = kube_cred_new(&loop, kc, on_ready, &r);
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EAGAIN);
	wait_ready(&loop, &r, 2);
	CHECK_INT(r.err, -EACCES);
	CHECK(strstr(r.message, "output has kind \"Nope\", expected \"ExecCredential\"") != NULL);
	kube_cred_close(c);
	kubeconfig_free(kc);

	/* a command that does not exist fails at once */
	char *missing = xasprintf("%s/no-such-plugin", dir);
	kc = exec_config(missing, "");
	c = kube_cred_new(&loop, kc, on_ready, &r);
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EACCES);
	expect = xasprintf("exec plugin \"%s\": cannot run: no such file or directory", missing);
	CHECK_STR(msg, expect);
	free(expect);
	kube_cred_close(c);
	kubeconfig_free(kc);

	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(r.calls, 2);
	CHECK_INT(uv_loop_close(&loop), 0);
	free(script);
	free(garbage);
	free(missing);
}

static void test_token_file(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	char *path = write_script("token", "first\n");
	struct kubeconfig *kc = xcalloc(1, sizeof(*kc));
	kc->server = xstrdup("https://127.0.0.1:1");
	kc->token = xstrdup("static");
	kc->token_file = xstrdup(path);
	struct ready r = {0};
	struct kube_cred *c = kube_cred_new(&loop, kc, on_ready, &r);
	struct kube_creds cr;
	const char *msg;
	CHECK_INT(kube_cred_get(c, &cr, &msg), 0);
	CHECK_STR(cr.token, "first");
	free(write_script("token", "second\n"));
	CHECK_INT(kube_cred_get(c, &cr, &msg), 0);
	CHECK_STR(cr.token, "first"); /* re-read after a minute only */
	CHECK(kube_cred_invalidate(c));
	CHECK_INT(kube_cred_get(c, &cr, &msg), 0);
	CHECK_STR(cr.token, "second");
	/* the file disappears: the previous token stays in use */
	unlink(path);
	kube_cred_invalidate(c);
	CHECK_INT(kube_cred_get(c, &cr, &msg), 0);
	CHECK_STR(cr.token, "second");
	kube_cred_close(c);

	/* no token at all */
	c = kube_cred_new(&loop, kc, on_ready, &r);
	CHECK_INT(kube_cred_get(c, &cr, &msg), -EACCES);
	char *expect = xasprintf("cannot read the token file %s: No such file or directory", path);
	CHECK_STR(msg, expect);
	free(expect);
	kube_cred_close(c);
	kubeconfig_free(kc);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
	free(path);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/runboat-cred-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	RUN(test_parse);
	RUN(test_exec_plugin);
	RUN(test_exec_failures);
	RUN(test_token_file);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
	return UNIT_DONE();
}
