#include <errno.h>

#include "unit.h"
#include "util.h"

static void test_buf(void)
{
	struct buf b = {0};
	buf_append_str(&b, "hello");
	buf_printf(&b, " %d %s", 42, "x");
	CHECK_STR(b.data, "hello 42 x");
	buf_consume(&b, 6);
	CHECK_STR(b.data, "42 x");
	/* a long printf grows the buffer */
	char big[1000];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	buf_printf(&b, "%s", big);
	CHECK_INT(b.len, 4 + 999);
	char *s = buf_steal(&b);
	CHECK_INT(strlen(s), 1003);
	CHECK(b.data == NULL && b.len == 0);
	free(s);
}

static void test_url_decode(void)
{
	char *s = url_decode("a%20b+c%2F", 10, true);
	CHECK_STR(s, "a b c/");
	free(s);
	s = url_decode("a+b", 3, false);
	CHECK_STR(s, "a+b");
	free(s);
	CHECK(url_decode("%", 1, false) == NULL);
	CHECK(url_decode("%4", 2, false) == NULL);
	CHECK(url_decode("ab%4", 4, false) == NULL);
	CHECK(url_decode("%zz", 3, false) == NULL);
	CHECK(url_decode("%00", 3, false) == NULL);
	s = url_decode("%41", 3, false);
	CHECK_STR(s, "A");
	free(s);
	struct buf b = {0};
	buf_append_url_encoded(&b, "feat/x y&z");
	CHECK_STR(b.data, "feat%2Fx%20y%26z");
	buf_free(&b);
}

static void test_time(void)
{
	char out[32];
	format_rfc3339(0, out);
	CHECK_STR(out, "1970-01-01T00:00:00Z");
	int64_t t;
	CHECK_INT(parse_rfc3339("2021-11-28T10:20:30Z", &t), 0);
	format_rfc3339(t, out);
	CHECK_STR(out, "2021-11-28T10:20:30Z");
	CHECK_INT(parse_rfc3339("2021-11-28T10:20:30.123456Z", &t), 0);
	CHECK_INT(parse_rfc3339("2021-11-28T12:20:30+02:00", &t), 0);
	format_rfc3339(t, out);
	CHECK_STR(out, "2021-11-28T10:20:30Z");
	CHECK_INT(parse_rfc3339("yesterday", &t), -EINVAL);
	CHECK_INT(parse_rfc3339("2021-11-28T10:20:30", &t), -EINVAL);
	CHECK_INT(parse_rfc3339("2021-11-28T10:20:30Zjunk", &t), -EINVAL);
	/* regression: a short offset was read past the end of the string */
	CHECK_INT(parse_rfc3339("2021-11-28T10:20:30+1:2", &t), -EINVAL);
	CHECK_INT(parse_rfc3339("2021-11-28T10:20:30+01", &t), -EINVAL);
	CHECK_INT(parse_rfc3339("2021-11-28T10:20:30+01:00x", &t), -EINVAL);
}

static void test_secure_equal(void)
{
	CHECK(secure_equal("abc", 3, "abc", 3));
	CHECK(!secure_equal("abd", 3, "abc", 3));
	CHECK(!secure_equal("ab", 2, "abc", 3));
	CHECK(!secure_equal("abcd", 4, "abc", 3));
	CHECK(secure_equal("", 0, "", 0));
}

static void test_strings(void)
{
	CHECK(str_starts_with("refs/heads/x", "refs/heads/"));
	CHECK(!str_starts_with("refs/tags/x", "refs/heads/"));
	CHECK(str_ends_with("a.js", ".js"));
	CHECK(!str_ends_with("js", ".js"));
	CHECK(span_ieq("Content-Length", 14, "content-length"));
	char *s = xasprintf("%s-%d", "b", 7);
	CHECK_STR(s, "b-7");
	free(s);
}

int main(void)
{
	RUN(test_buf);
	RUN(test_url_decode);
	RUN(test_time);
	RUN(test_secure_equal);
	RUN(test_strings);
	return UNIT_DONE();
}
