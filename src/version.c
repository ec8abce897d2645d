#include "version.h"

#include <curl/curl.h>
#include <gnu/libc-version.h>
#include <jansson.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <uv.h>
#include <wslay/wslay.h>
#include <yaml.h>

#include "config.h"
#include "util.h"

#ifndef RUNBOAT_TOMLPLUSPLUS_VERSION
#define RUNBOAT_TOMLPLUSPLUS_VERSION "unknown"
#endif

void version_describe(struct buf *b)
{
	buf_printf(b, "runboat %s\n", RUNBOAT_VERSION);
	buf_printf(b, "libuv %s\n", uv_version_string());
	const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
	/* curl_version() names libcurl and every library it was built with:
	 * "libcurl/8.x OpenSSL/3.x zlib/1.x nghttp2/1.x ..." */
	buf_printf(b, "libcurl %s (%s; HTTP/2 %s)\n", cv->version, curl_version(),
		   (cv->features & CURL_VERSION_HTTP2) ? "yes" : "no");
#ifdef OPENSSL_VERSION_STRING
	buf_printf(b, "OpenSSL %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
#else
	buf_printf(b, "%s\n", OpenSSL_version(OPENSSL_VERSION));
#endif
	buf_printf(b, "jansson %s\n", jansson_version_str());
	buf_printf(b, "libyaml %s\n", yaml_get_version_string());
	buf_printf(b, "llhttp %d.%d.%d (built in)\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
		   LLHTTP_VERSION_PATCH);
	buf_printf(b, "wslay %s (headers)\n", WSLAY_VERSION);
	buf_printf(b, "toml++ %s (header-only)\n", RUNBOAT_TOMLPLUSPLUS_VERSION);
	buf_printf(b, "glibc %s\n", gnu_get_libc_version());
	char why[8192];
	char *kf = config_default_kubefiles(why, sizeof why);
	buf_printf(b, "default kubefiles: %s\n", kf ? kf : why);
	free(kf);
}
