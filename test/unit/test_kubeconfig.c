/* kubeconfig parsing for every auth form, written to a temporary directory. */
#include "kubeconfig.h"
#include "util.h"
#include "unit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CA_PEM "-----BEGIN CERTIFICATE-----\nQ0FDQUNB\n-----END CERTIFICATE-----\n"
#define CERT_PEM "-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n"
#define KEY_PEM "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n"
/* base64 of the three above */
#define CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClEwRkRRVU5CCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
#define CERT_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClEwVlNWQT09Ci0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
#define KEY_B64 "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tClMwVloKLS0tLS1FTkQgUFJJVkFURSBLRVktLS0tLQo="

static char dir[256];

static char *write_file(const char *name, const char *content)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(content, f);
		fclose(f);
	}
	return path;
}

static struct kubeconfig *load_str(const char *yaml, const char *context, char *err, size_t n)
{
	char *path = write_file("config", yaml);
	struct kubeconfig *kc = kubeconfig_load(path, context, err, n);
	free(path);
	return kc;
}

static void test_token_and_ca_data(void)
{
	char err[512] = "";
	struct kubeconfig *kc = load_str("apiVersion: v1\n"
					 "kind: Config\n"
					 "clusters:\n"
					 "- name: c1\n"
					 "  cluster:\n"
					 "    server: https://127.0.0.1:6443/\n"
					 "    certificate-authority-data: " CA_B64 "\n"
					 "users:\n"
					 "- name: u1\n"
					 "  user:\n"
					 "    token: abc.def\n"
					 "contexts:\n"
					 "- name: ctx1\n"
					 "  context: {cluster: c1, user: u1, namespace: builds}\n"
					 "current-context: ctx1\n",
					 NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (!kc) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK_STR(kc->server, "https://127.0.0.1:6443");
	CHECK_STR(kc->context, "ctx1");
	CHECK_STR(kc->namespace, "builds");
	CHECK_STR(kc->token, "abc.def");
	CHECK_STR(kc->ca_pem, CA_PEM);
	CHECK_INT(kc->ca_len, strlen(CA_PEM));
	CHECK(!kc->insecure);
	CHECK(kc->cert_pem == NULL);
	CHECK(kc->exec == NULL);
	CHECK(kc->token_file == NULL);
	kubeconfig_free(kc);
}

static const char *TWO_CONTEXTS =
	"clusters:\n"
	"- name: one\n"
	"  cluster: {server: 'https://one:1'}\n"
	"- name: two\n"
	"  cluster: {server: 'https://two:2', insecure-skip-tls-verify: true}\n"
	"users:\n"
	"- {name: u1, user: {token: t1}}\n"
	"- {name: u2, user: {token: t2}}\n"
	"contexts:\n"
	"- {name: a, context: {cluster: one, user: u1}}\n"
	"- {name: b, context: {cluster: two, user: u2}}\n"
	"current-context: a\n";

static void test_named_context(void)
{
	char err[512] = "";
	struct kubeconfig *kc = load_str(TWO_CONTEXTS, NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->server, "https://one:1");
		CHECK_STR(kc->token, "t1");
		CHECK(!kc->insecure);
		CHECK(kc->namespace == NULL);
		kubeconfig_free(kc);
	}
	kc = load_str(TWO_CONTEXTS, "b", err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->context, "b");
		CHECK_STR(kc->server, "https://two:2");
		CHECK_STR(kc->token, "t2");
		CHECK(kc->insecure);
		kubeconfig_free(kc);
	}
	kc = load_str(TWO_CONTEXTS, "nope", err, sizeof(err));
	CHECK(kc == NULL);
	char *expect = xasprintf("%s/config: context \"nope\" not found (contexts: \"a\", \"b\")", dir);
	CHECK_STR(err, expect);
	free(expect);
}

static void test_files_relative(void)
{
	char err[512] = "";
	free(write_file("ca.crt", CA_PEM));
	free(write_file("client.crt", CERT_PEM));
	free(write_file("client.key", KEY_PEM));
	free(write_file("token", "file-token\n"));
	struct kubeconfig *kc = load_str("clusters:\n"
					 "- name: c\n"
					 "  cluster:\n"
					 "    server: https://h:1\n"
					 "    certificate-authority: ca.crt\n"
					 "users:\n"
					 "- name: u\n"
					 "  user:\n"
					 "    client-certificate: client.crt\n"
					 "    client-key: client.key\n"
					 "    tokenFile: token\n"
					 "contexts:\n"
					 "- {name: x, context: {cluster: c, user: u}}\n"
					 "current-context: x\n",
					 NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (!kc) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK_STR(kc->ca_pem, CA_PEM);
	CHECK_STR(kc->cert_pem, CERT_PEM);
	CHECK_STR(kc->key_pem, KEY_PEM);
	char *tf = xasprintf("%s/token", dir);
	CHECK_STR(kc->token_file, tf);
	free(tf);
	CHECK(kc->token == NULL);
	kubeconfig_free(kc);
}

static void test_client_cert_data(void)
{
	char err[512] = "";
	struct kubeconfig *kc = load_str("clusters: [{name: c, cluster: {server: 'http://h:1'}}]\n"
					 "users:\n"
					 "- name: u\n"
					 "  user:\n"
					 "    client-certificate-data: " CERT_B64 "\n"
					 "    client-key-data: " KEY_B64 "\n"
					 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
					 "current-context: x\n",
					 NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (!kc) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK_STR(kc->cert_pem, CERT_PEM);
	CHECK_INT(kc->cert_len, strlen(CERT_PEM));
	CHECK_STR(kc->key_pem, KEY_PEM);
	CHECK(kc->ca_pem == NULL);
	kubeconfig_free(kc);

	/* a certificate without its key */
	kc = load_str("clusters: [{name: c, cluster: {server: 'http://h:1'}}]\n"
		      "users: [{name: u, user: {client-certificate-data: " CERT_B64 "}}]\n"
		      "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "user \"u\" has a client certificate but no client key") != NULL);

	/* bad base64 */
	kc = load_str("clusters: [{name: c, cluster: {server: 'http://h:1', "
		      "certificate-authority-data: '!!!notbase64'}}]\n"
		      "contexts: [{name: x, context: {cluster: c}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "cluster \"c\": \"certificate-authority-data\" is not valid base64") != NULL);
}

static void test_exec(void)
{
	char err[512] = "";
	struct kubeconfig *kc = load_str(
		"clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		"users:\n"
		"- name: u\n"
		"  user:\n"
		"    exec:\n"
		"      apiVersion: client.authentication.k8s.io/v1\n"
		"      command: ./bin/get-token\n"
		"      args: [--cluster, prod]\n"
		"      env:\n"
		"      - {name: FOO, value: bar}\n"
		"      provideClusterInfo: true\n"
		"      interactiveMode: Never\n"
		"contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		"current-context: x\n",
		NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (!kc) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK(kc->exec != NULL);
	char *cmd = xasprintf("%s/./bin/get-token", dir);
	CHECK_STR(kc->exec->command, cmd);
	free(cmd);
	CHECK_STR(kc->exec->api_version, "client.authentication.k8s.io/v1");
	CHECK_STR(kc->exec->args[0], "--cluster");
	CHECK_STR(kc->exec->args[1], "prod");
	CHECK(kc->exec->args[2] == NULL);
	CHECK_STR(kc->exec->env[0], "FOO=bar");
	CHECK(kc->exec->env[1] == NULL);
	CHECK(kc->exec->provide_cluster_info);
	kubeconfig_free(kc);

	/* a command on $PATH is not resolved */
	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		      "users: [{name: u, user: {exec: {apiVersion: "
		      "client.authentication.k8s.io/v1beta1, command: aws}}}]\n"
		      "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->exec->command, "aws");
		CHECK(kc->exec->args[0] == NULL);
		kubeconfig_free(kc);
	}

	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		      "users: [{name: u, user: {exec: {apiVersion: "
		      "client.authentication.k8s.io/v1alpha1, command: aws}}}]\n"
		      "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "exec apiVersion \"client.authentication.k8s.io/v1alpha1\" is not "
			  "supported") != NULL);

	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		      "users: [{name: u, user: {exec: {apiVersion: "
		      "client.authentication.k8s.io/v1, args: [a]}}}]\n"
		      "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "user \"u\": exec has no command") != NULL);

	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		      "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n"
		      "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "auth-provider \"gcp\" is not supported") != NULL);
}

static void test_errors(void)
{
	char err[512] = "";
	struct kubeconfig *kc;
	char *expect;

	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		      "contexts: [{name: x, context: {cluster: missing}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	expect = xasprintf("%s/config: context \"x\" refers to cluster \"missing\", which is not "
			   "in clusters", dir);
	CHECK_STR(err, expect);
	free(expect);

	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		      "contexts: [{name: x, context: {cluster: c, user: ghost}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "refers to user \"ghost\", which is not in users") != NULL);

	kc = load_str("clusters: [{name: c, cluster: {}}]\n"
		      "contexts: [{name: x, context: {cluster: c}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "cluster \"c\" has no server") != NULL);

	kc = load_str("clusters: [{name: c, cluster: {server: 'ftp://h'}}]\n"
		      "contexts: [{name: x, context: {cluster: c}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "server \"ftp://h\" is not an http(s):// URL") != NULL);

	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		      "contexts: [{name: x, context: {cluster: c}}]\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "no current-context is set and no context was given") != NULL);

	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1', "
		      "certificate-authority: nosuch.crt}}]\n"
		      "contexts: [{name: x, context: {cluster: c}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	expect = xasprintf("%s/config: cluster \"c\": cannot read certificate-authority "
			   "\"%s/nosuch.crt\": No such file or directory", dir, dir);
	CHECK_STR(err, expect);
	free(expect);

	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		      "users: [{name: u, user: {tokenFile: /nonexistent/token}}]\n"
		      "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "user \"u\": cannot read tokenFile \"/nonexistent/token\": No such "
			  "file or directory") != NULL);

	kc = load_str("clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		      "users: [{name: u, user: {token: [1, 2]}}]\n"
		      "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		      "current-context: x\n",
		      NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "user \"u\": \"token\" must be a string") != NULL);

	kc = load_str("clusters: [\n  bad", NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "config: not valid YAML: line ") != NULL);

	kc = load_str("- just\n- a list\n", NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "the top level must be a mapping") != NULL);

	/* unreadable */
	char *missing = xasprintf("%s/does-not-exist", dir);
	kc = kubeconfig_load(missing, NULL, err, sizeof(err));
	CHECK(kc == NULL);
	expect = xasprintf("%s: cannot read kubeconfig: No such file or directory", missing);
	CHECK_STR(err, expect);
	free(expect);
	free(missing);
	kc = kubeconfig_load(dir, NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "cannot read kubeconfig: not a regular file") != NULL);
	if (geteuid() != 0) {
		char *p = write_file("secret", "x: 1\n");
		chmod(p, 0);
		kc = kubeconfig_load(p, NULL, err, sizeof(err));
		CHECK(kc == NULL);
		CHECK(strstr(err, "Permission denied") != NULL);
		free(p);
	}
}

static void test_json_kubeconfig(void)
{
	char err[512] = "";
	struct kubeconfig *kc = load_str(
		"{\"clusters\":[{\"name\":\"c\",\"cluster\":{\"server\":\"https://h:9\"}}],"
		"\"users\":[{\"name\":\"u\",\"user\":{\"username\":\"bob\",\"password\":\"pw\"}}],"
		"\"contexts\":[{\"name\":\"x\",\"context\":{\"cluster\":\"c\",\"user\":\"u\"}}],"
		"\"current-context\":\"x\"}",
		NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->server, "https://h:9");
		CHECK_STR(kc->username, "bob");
		CHECK_STR(kc->password, "pw");
		kubeconfig_free(kc);
	}
}

static void test_in_cluster(void)
{
	char err[512] = "";
	char *sa = xasprintf("%s/sa", dir);
	mkdir(sa, 0700);
	free(write_file("sa/token", "sa-token\n"));
	free(write_file("sa/ca.crt", CA_PEM));
	free(write_file("sa/namespace", "runboat\n"));

	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	struct kubeconfig *kc = kubeconfig_in_cluster(sa, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set") != NULL);

	setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	kc = kubeconfig_in_cluster(sa, err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->server, "https://10.0.0.1:443");
		char *tf = xasprintf("%s/token", sa);
		CHECK_STR(kc->token_file, tf);
		free(tf);
		CHECK_STR(kc->ca_pem, CA_PEM);
		CHECK_STR(kc->namespace, "runboat");
		CHECK(kc->path == NULL);
		kubeconfig_free(kc);
	}
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	kc = kubeconfig_in_cluster(sa, err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->server, "https://[fd00::1]:443");
		kubeconfig_free(kc);
	}
	setenv("KUBERNETES_SERVICE_PORT", "44x", 1);
	kc = kubeconfig_in_cluster(sa, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "is not a port number") != NULL);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);

	char *nosa = xasprintf("%s/nosa", dir);
	kc = kubeconfig_in_cluster(nosa, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "cannot read the service account token") != NULL);
	free(nosa);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	free(sa);
}

static void test_resolve_order(void)
{
	char err[512] = "";
	char *a = write_file("a.yaml", "clusters: [{name: c, cluster: {server: 'https://a:1'}}]\n"
				       "contexts: [{name: x, context: {cluster: c}}]\n"
				       "current-context: x\n");
	char *home = xasprintf("%s/home", dir);
	char *kdir = xasprintf("%s/home/.kube", dir);
	mkdir(home, 0700);
	mkdir(kdir, 0700);
	free(write_file("home/.kube/config",
			"clusters: [{name: c, cluster: {server: 'https://home:1'}}]\n"
			"contexts: [{name: x, context: {cluster: c}}]\n"
			"current-context: x\n"));
	setenv("HOME", home, 1);
	unsetenv("KUBERNETES_SERVICE_HOST");

	/* $KUBECONFIG: the first existing file of the list */
	char *list = xasprintf("%s/missing.yaml:%s", dir, a);
	setenv("KUBECONFIG", list, 1);
	struct kubeconfig *kc = kubeconfig_resolve(NULL, NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->server, "https://a:1");
		CHECK_STR(kc->path, a);
		kubeconfig_free(kc);
	}
	/* an explicit path wins */
	char *hc = xasprintf("%s/.kube/config", home);
	kc = kubeconfig_resolve(hc, NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->server, "https://home:1");
		kubeconfig_free(kc);
	}
	/* then ~/.kube/config */
	unsetenv("KUBECONFIG");
	kc = kubeconfig_resolve("", NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->server, "https://home:1");
		kubeconfig_free(kc);
	}
	/* nothing at all */
	unlink(hc);
	kc = kubeconfig_resolve(NULL, NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "no kubeconfig found") != NULL);
	CHECK(strstr(err, "not running in a cluster") != NULL);
	/* then the in-cluster service account, from RUNBOAT_SERVICE_ACCOUNT_DIR */
	char *sa = xasprintf("%s/sa2", dir);
	mkdir(sa, 0700);
	free(write_file("sa2/token", "sa2-token\n"));
	free(write_file("sa2/ca.crt", CA_PEM));
	setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
	setenv(KUBECONFIG_SA_DIR_ENV, sa, 1);
	kc = kubeconfig_resolve(NULL, NULL, err, sizeof(err));
	CHECK(kc != NULL);
	if (kc) {
		CHECK_STR(kc->server, "https://127.0.0.1:6443");
		char *tf = xasprintf("%s/token", sa);
		CHECK_STR(kc->token_file, tf);
		free(tf);
		CHECK_STR(kc->ca_pem, CA_PEM);
		CHECK(kc->namespace == NULL); /* no namespace file there */
		CHECK(kc->path == NULL);
		kubeconfig_free(kc);
	}
	/* a directory without a token: the error names the file */
	char *empty = xasprintf("%s/sa-empty", dir);
	mkdir(empty, 0700);
	setenv(KUBECONFIG_SA_DIR_ENV, empty, 1);
	kc = kubeconfig_resolve(NULL, NULL, err, sizeof(err));
	CHECK(kc == NULL);
	CHECK(strstr(err, "sa-empty/token") != NULL);
	unsetenv(KUBECONFIG_SA_DIR_ENV);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	free(empty);
	free(sa);
	free(hc);
	free(list);
	free(a);
	free(home);
	free(kdir);
}

/* A kubeconfig (or token, CA file) naming a FIFO or a directory is refused
 * at once: opening a FIFO must not wait for a writer. */
static void test_special_files(void)
{
	char fifo[600], *text = NULL;
	size_t len = 0;
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	CHECK_INT(mkfifo(fifo, 0600), 0);
	CHECK_INT(kubeconfig_read_file(fifo, 1 << 20, &text, &len), -EINVAL);
	CHECK_INT(kubeconfig_read_file(dir, 1 << 20, &text, &len), -EINVAL);
	CHECK(text == NULL);
	unlink(fifo);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/runboat-kubeconfig-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_token_and_ca_data);
	RUN(test_named_context);
	RUN(test_files_relative);
	RUN(test_client_cert_data);
	RUN(test_exec);
	RUN(test_errors);
	RUN(test_json_kubeconfig);
	RUN(test_in_cluster);
	RUN(test_resolve_order);
	RUN(test_special_files);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
	return UNIT_DONE();
}
