/* log.c: the text and JSON formats as written to stderr (captured in a
 * file), JSON escaping of any bytes (checked by jansson's strict parser,
 * which refuses invalid UTF-8 and raw control characters), held records. */
#include "log.h"

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <unistd.h>

#include "unit.h"
#include "util.h"

static char capture_path[] = "/tmp/runboat-test-log-XXXXXX";
static int capture_fd = -1, saved_stderr = -1;

/* Sends stderr (fd 2) to the capture file, emptied. */
static void capture_start(void)
{
	fflush(stderr);
	if (ftruncate(capture_fd, 0) != 0 || lseek(capture_fd, 0, SEEK_SET) != 0) {
		perror("capture");
		exit(2);
	}
	dup2(capture_fd, STDERR_FILENO);
}

/* Flushes the log, gives stderr back and returns what was written (owned). */
static char *capture_end(void)
{
	log_flush();
	dup2(saved_stderr, STDERR_FILENO);
	off_t n = lseek(capture_fd, 0, SEEK_END);
	char *out = xmalloc((size_t)n + 1);
	if (pread(capture_fd, out, (size_t)n, 0) != n) {
		perror("pread");
		exit(2);
	}
	out[n] = '\0';
	return out;
}

/* Parses one JSON line strictly; NULL (and a message) if it is not one
 * object. */
static json_t *parse_line(const char *line, size_t len)
{
	json_error_t e;
	json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
	if (!j || !json_is_object(j)) {
		fprintf(stderr, "  not a JSON object: %.*s (%s)\n", (int)len, line, e.text);
		json_decref(j);
		return NULL;
	}
	return j;
}

static json_t *parse_only_line(const char *out)
{
	const char *nl = strchr(out, '\n');
	CHECK(nl != NULL && nl[1] == '\0');
	if (!nl || nl[1])
		return NULL;
	return parse_line(out, (size_t)(nl - out));
}

static const char *get_str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void test_text_format(void)
{
	log_set_format(LOG_FORMAT_TEXT);
	capture_start();
	log_warn("disk %d%% full", 93);
	log_access("GET", "/a\"b\x01", 404, 12, 1.5);
	char *out = capture_end();
	regex_t re;
	CHECK_INT(regcomp(&re,
			  "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z warn  disk 93% full\n"
			  "[0-9TZ:.-]+ http  GET /a\\\\x22b\\\\x01 404 12 1\\.50ms\n$",
			  REG_EXTENDED),
		  0);
	CHECK(regexec(&re, out, 0, NULL, 0) == 0);
	if (regexec(&re, out, 0, NULL, 0) != 0)
		fprintf(stderr, "  got: %s", out);
	regfree(&re);
	free(out);
}

static void test_json_format(void)
{
	log_set_format(LOG_FORMAT_JSON);
	capture_start();
	log_error("quote \" backslash \\ newline \n tab \t bell \a del \x7f end");
	char *out = capture_end();
	json_t *j = parse_only_line(out);
	CHECK(j != NULL);
	if (j) {
		CHECK_STR(get_str(j, "level"), "error");
		CHECK_STR(get_str(j, "msg"),
			  "quote \" backslash \\ newline \n tab \t bell \a del \x7f end");
		const char *t = get_str(j, "time");
		CHECK(t && strlen(t) == 24 && t[10] == 'T' && t[23] == 'Z');
		CHECK_INT(json_object_size(j), 3);
	}
	json_decref(j);
	free(out);

	/* the access log: the same words in msg, and fields */
	capture_start();
	log_access("PO\"ST", "/p?q=\xff\xfe&x=\x01", 201, 12345678901ULL, 0.256);
	out = capture_end();
	j = parse_only_line(out);
	CHECK(j != NULL);
	if (j) {
		CHECK_STR(get_str(j, "level"), "info");
		CHECK_STR(get_str(j, "kind"), "access");
		CHECK_STR(get_str(j, "method"), "PO\"ST");
		CHECK_STR(get_str(j, "path"), "/p?q=\xef\xbf\xbd\xef\xbf\xbd&x=\x01");
		CHECK_STR(get_str(j, "msg"), "PO\"ST /p?q=\xef\xbf\xbd\xef\xbf\xbd&x=\x01 201");
		CHECK_INT(json_integer_value(json_object_get(j, "status")), 201);
		CHECK_INT(json_integer_value(json_object_get(j, "bytes")), 12345678901LL);
		CHECK(fabs(json_real_value(json_object_get(j, "duration_ms")) - 0.26) < 1e-9);
	}
	json_decref(j);
	free(out);
	log_set_format(LOG_FORMAT_TEXT);
}

/* Escapes s[0..len) and decodes it back with jansson. */
static char *roundtrip(const char *s, size_t len, size_t *outlen)
{
	struct buf b = {0};
	log_json_string(&b, s, len);
	json_error_t e;
	json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	buf_free(&b);
	if (!json_is_string(j)) {
		json_decref(j);
		return NULL;
	}
	*outlen = json_string_length(j);
	char *out = xmalloc(*outlen + 1);
	memcpy(out, json_string_value(j), *outlen + 1);
	json_decref(j);
	return out;
}

#define FFFD "\xef\xbf\xbd"

static void test_invalid_utf8(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\xa2", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\xa2"},
		{"\x80", FFFD},                           /* lone continuation */
		{"\xff\xfe", FFFD FFFD},                  /* never in UTF-8 */
		{"\xc0\xaf", FFFD FFFD},                  /* overlong '/' */
		{"\xc1\xbf", FFFD FFFD},                  /* overlong */
		{"\xe0\x80\xaf", FFFD FFFD FFFD},         /* overlong, 3 bytes */
		{"\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD}, /* overlong, 4 bytes */
		{"\xed\xa0\x80", FFFD FFFD FFFD},         /* surrogate U+D800 */
		{"\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD}, /* U+110000 */
		{"\xf5\x80\x80\x80", FFFD FFFD FFFD FFFD},
		{"a\xe2\x82", "a" FFFD FFFD},             /* truncated at the end */
		{"\xe2\x82" "b", FFFD FFFD "b"},          /* truncated before ASCII */
		{"\xed\x9f\xbf", "\xed\x9f\xbf"},         /* U+D7FF, the last before surrogates */
		{"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"}, /* U+10FFFF */
		{"\xe2\x80\xa8", "\xe2\x80\xa8"},         /* U+2028 stays */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t n;
		char *out = roundtrip(cases[i].in, strlen(cases[i].in), &n);
		CHECK(out != NULL);
		if (out)
			CHECK_STR(out, cases[i].want);
		free(out);
	}
	/* a NUL byte inside the span is escaped, not the end */
	size_t n;
	char *out = roundtrip("a\0b", 3, &n);
	CHECK(out && n == 3 && memcmp(out, "a\0b", 3) == 0);
	free(out);
}

/* Random bytes: always a string jansson accepts; random valid UTF-8 (and
 * every control character): decoded back to exactly the input. */
static void test_random(void)
{
	unsigned seed = 12345;
	for (int iter = 0; iter < 20000; iter++) {
		char in[64];
		size_t len = (size_t)(rand_r(&seed) % (int)sizeof in);
		for (size_t i = 0; i < len; i++)
			in[i] = (char)(rand_r(&seed) & 0xff);
		size_t n;
		char *out = roundtrip(in, len, &n);
		CHECK(out != NULL);
		free(out);

		/* valid UTF-8 from random code points */
		struct buf b = {0};
		int cps = rand_r(&seed) % 16;
		for (int k = 0; k < cps; k++) {
			unsigned cp;
			do {
				int kind = rand_r(&seed) % 4;
				cp = kind == 0   ? (unsigned)(rand_r(&seed) % 0x80)
				     : kind == 1 ? 0x80 + (unsigned)(rand_r(&seed) % 0x780)
				     : kind == 2 ? 0x800 + (unsigned)(rand_r(&seed) % 0xf800)
						 : 0x10000 + (unsigned)(rand_r(&seed) % 0x100000);
			} while (cp >= 0xd800 && cp <= 0xdfff);
			unsigned char e[4];
			size_t el;
			if (cp < 0x80) {
				e[0] = (unsigned char)cp;
				el = 1;
			} else if (cp < 0x800) {
				e[0] = (unsigned char)(0xc0 | (cp >> 6));
				e[1] = (unsigned char)(0x80 | (cp & 0x3f));
				el = 2;
			} else if (cp < 0x10000) {
				e[0] = (unsigned char)(0xe0 | (cp >> 12));
				e[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
				e[2] = (unsigned char)(0x80 | (cp & 0x3f));
				el = 3;
			} else {
				e[0] = (unsigned char)(0xf0 | (cp >> 18));
				e[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
				e[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
				e[3] = (unsigned char)(0x80 | (cp & 0x3f));
				el = 4;
			}
			buf_append(&b, e, el);
		}
		out = roundtrip(b.data ? b.data : "", b.len, &n);
		CHECK(out && n == b.len && memcmp(out, b.data ? b.data : "", n) == 0);
		free(out);
		buf_free(&b);
	}
	/* every byte value alone */
	for (int c = 0; c < 256; c++) {
		char in = (char)c;
		size_t n;
		char *out = roundtrip(&in, 1, &n);
		CHECK(out != NULL);
		if (out && c < 0x80)
			CHECK(n == 1 && out[0] == in);
		free(out);
	}
}

/* Records logged while held come out at release in the level and format
 * set by then (what main does around config_load). */
static void test_hold(void)
{
	log_set_level(LOG_INFO);
	log_set_format(LOG_FORMAT_TEXT);
	capture_start();
	log_hold();
	log_warn("held warning %d", 1);
	log_debug("held debug");
	log_error("held error");
	log_flush();
	char *out = capture_end();
	CHECK_STR(out, ""); /* nothing written while held */
	free(out);

	capture_start();
	log_set_level(LOG_WARN);
	log_set_format(LOG_FORMAT_JSON);
	log_release();
	log_info("after release, below the level");
	out = capture_end();
	char *nl = strchr(out, '\n');
	CHECK(nl != NULL);
	if (nl) {
		json_t *a = parse_line(out, (size_t)(nl - out));
		json_t *b = parse_only_line(nl + 1);
		CHECK(a && b);
		if (a && b) {
			CHECK_STR(get_str(a, "msg"), "held warning 1");
			CHECK_STR(get_str(a, "level"), "warn");
			CHECK_STR(get_str(b, "msg"), "held error");
		}
		json_decref(a);
		json_decref(b);
	}
	free(out);
	log_set_level(LOG_INFO);
	log_set_format(LOG_FORMAT_TEXT);
}

static void test_parse(void)
{
	CHECK_INT(log_format_parse("text"), LOG_FORMAT_TEXT);
	CHECK_INT(log_format_parse("json"), LOG_FORMAT_JSON);
	CHECK_INT(log_format_parse("JSON"), -1);
	CHECK_INT(log_format_parse(""), -1);
	CHECK_INT(log_level_parse("warning"), LOG_WARN);
	CHECK_INT(log_level_parse("trace"), -1);
}

int main(void)
{
	capture_fd = mkstemp(capture_path);
	if (capture_fd < 0) {
		perror("mkstemp");
		return 2;
	}
	unlink(capture_path);
	saved_stderr = dup(STDERR_FILENO);

	RUN(test_parse);
	RUN(test_text_format);
	RUN(test_json_format);
	RUN(test_invalid_utf8);
	RUN(test_random);
	RUN(test_hold);

	close(capture_fd);
	close(saved_stderr);
	return UNIT_DONE();
}
