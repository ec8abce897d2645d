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

/* ---- UTF-8: the decoder against an encoder written from the definition ---- */

static bool cp_valid(uint32_t cp)
{
	return cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
}

/* The shortest encoding of cp (any value up to 0x1fffff), its length. */
static size_t encode(uint32_t cp, unsigned char out[4])
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A decoded character must be exactly the shortest encoding of a valid code
 * point; counts one failure per wrong buffer, not per byte. */
static bool decoded_right(const unsigned char *buf, size_t r, uint32_t cp)
{
	unsigned char enc[4];
	return cp_valid(cp) && encode(cp, enc) == r && memcmp(enc, buf, r) == 0;
}

static void test_utf8_every_code_point(void)
{
	size_t wrong = 0, truncated_accepted = 0, per_len[5] = {0};
	for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
		if (!cp_valid(cp))
			continue;
		unsigned char buf[5] = {0xff, 0xff, 0xff, 0xff, 0xff};
		size_t len = encode(cp, buf);
		per_len[len]++;
		uint32_t got = 0xffffffff;
		if (utf8_decode(buf, len, &got) != len || got != cp)
			wrong++;
		if (utf8_decode(buf, sizeof buf, NULL) != len) /* bytes after it do not matter */
			wrong++;
		for (size_t n = 1; n < len; n++)
			if (utf8_decode(buf, n, &got) != 0)
				truncated_accepted++;
	}
	CHECK_INT(wrong, 0);
	CHECK_INT(truncated_accepted, 0);
	CHECK_INT(per_len[1], 0x80);
	CHECK_INT(per_len[2], 0x800 - 0x80);
	CHECK_INT(per_len[3], 0x10000 - 0x800 - 0x800);
	CHECK_INT(per_len[4], 0x110000 - 0x10000);
}

/* Every buffer of 1, 2 and 3 bytes: whatever is accepted is right (above),
 * and as many are accepted as there are buffers that start with a valid
 * character, so nothing valid is refused either. */
static void test_utf8_exhaustive_short(void)
{
	size_t chars[5] = {0};
	for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
		unsigned char enc[4];
		if (cp_valid(cp))
			chars[encode(cp, enc)]++;
	}
	for (size_t n = 1; n <= 3; n++) {
		size_t accepted = 0, wrong = 0, expected = 0, total = (size_t)1 << (8 * n);
		for (size_t len = 1; len <= n; len++)
			expected += chars[len] << (8 * (n - len));
		for (size_t v = 0; v < total; v++) {
			unsigned char buf[3];
			for (size_t i = 0; i < n; i++)
				buf[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
			uint32_t cp = 0;
			size_t r = utf8_decode(buf, n, &cp);
			if (r) {
				accepted++;
				if (r > n || !decoded_right(buf, r, cp))
					wrong++;
			}
		}
		CHECK_INT(wrong, 0);
		CHECK_INT(accepted, expected);
	}
}

/* Four bytes from lead E0 to FF, every second and third byte, the fourth from
 * the edges of each byte class. */
static void test_utf8_exhaustive_long(void)
{
	static const unsigned char last[] = {0x00, 0x3f, 0x7f, 0x80, 0xa5, 0xbf, 0xc0, 0xff};
	size_t expected = 0, accepted = 0, wrong = 0;
	for (uint32_t cp = 0x800; cp <= 0x10ffff; cp++) {
		unsigned char enc[4];
		if (!cp_valid(cp))
			continue;
		size_t len = encode(cp, enc);
		if (len == 3)
			expected += ARRAY_SIZE(last); /* any fourth byte */
		else if ((enc[3] & 0xc0) == 0x80 && (enc[3] == 0x80 || enc[3] == 0xa5 || enc[3] == 0xbf))
			expected++;
	}
	for (unsigned b0 = 0xe0; b0 <= 0xff; b0++)
		for (unsigned b1 = 0; b1 <= 0xff; b1++)
			for (unsigned b2 = 0; b2 <= 0xff; b2++)
				for (size_t k = 0; k < ARRAY_SIZE(last); k++) {
					unsigned char buf[4] = {(unsigned char)b0, (unsigned char)b1,
								(unsigned char)b2, last[k]};
					uint32_t cp = 0;
					size_t r = utf8_decode(buf, 4, &cp);
					if (r) {
						accepted++;
						if (!decoded_right(buf, r, cp))
							wrong++;
					}
				}
	CHECK_INT(wrong, 0);
	CHECK_INT(accepted, expected);
}

static void test_utf8_named_cases(void)
{
	static const struct {
		const char *s;
		size_t len;
	} cases[] = {
		{"\x00", 1},             /* NUL is a character: callers decide */
		{"\x7f", 1},
		{"\x80", 0},             /* stray continuation */
		{"\xbf", 0},
		{"\xc0\x80", 0},         /* overlong NUL */
		{"\xc1\xbf", 0},         /* overlong U+007F */
		{"\xc2\x80", 2},         /* U+0080 */
		{"\xc2\x7f", 0},         /* bad continuation */
		{"\xdf\xbf", 2},         /* U+07FF */
		{"\xe0\x9f\xbf", 0},     /* overlong U+07FF */
		{"\xe0\xa0\x80", 3},     /* U+0800 */
		{"\xed\x9f\xbf", 3},     /* U+D7FF */
		{"\xed\xa0\x80", 0},     /* U+D800, a surrogate */
		{"\xed\xbf\xbf", 0},     /* U+DFFF */
		{"\xee\x80\x80", 3},     /* U+E000 */
		{"\xef\xbf\xbf", 3},     /* U+FFFF */
		{"\xf0\x8f\xbf\xbf", 0}, /* overlong U+FFFF */
		{"\xf0\x90\x80\x80", 4}, /* U+10000 */
		{"\xf4\x8f\xbf\xbf", 4}, /* U+10FFFF */
		{"\xf4\x90\x80\x80", 0}, /* U+110000 */
		{"\xf5\x80\x80\x80", 0},
		{"\xf8\x88\x80\x80", 0}, /* five-byte lead */
		{"\xff", 0},
		{"\xe2\x82", 0},         /* cut short (the NUL after is no continuation) */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t n = strlen(cases[i].s);
		size_t got = utf8_decode(cases[i].s, n ? n : 1, NULL);
		if (got != cases[i].len)
			fprintf(stderr, "  case %zu\n", i);
		CHECK_INT(got, cases[i].len);
	}
	uint32_t cp = 0;
	CHECK_INT(utf8_decode("\xe2\x82\xac", 3, &cp), 3);
	CHECK_INT(cp, 0x20ac);
}

static void test_utf8_cut(void)
{
	const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"; /* a, e acute, euro, emoji */
	size_t len = strlen(s);
	CHECK_INT(utf8_cut(s, len, 100), len);
	CHECK_INT(utf8_cut(s, len, len), len);
	static const size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6};
	for (size_t max = 0; max < ARRAY_SIZE(want); max++)
		CHECK_INT(utf8_cut(s, len, max), want[max]);
	CHECK_INT(utf8_cut("\x80\x80\x80", 3, 2), 0); /* only continuations: nothing kept */
	/* on random valid text: never above max, never splits, loses under 4 bytes */
	unsigned seed = 9;
	size_t wrong = 0;
	for (int round = 0; round < 2000; round++) {
		char text[64];
		size_t n = 0;
		while (n < 56) {
			seed = seed * 1103515245u + 12345u;
			uint32_t cp = (seed >> 8) % 0x110000;
			if (!cp_valid(cp) || cp == 0)
				continue;
			n += encode(cp, (unsigned char *)text + n);
		}
		for (size_t max = 0; max <= n; max++) {
			size_t c = utf8_cut(text, n, max);
			size_t i = 0;
			while (i < c) {
				size_t l = utf8_decode(text + i, c - i, NULL);
				if (!l)
					break;
				i += l;
			}
			if (c > max || i != c || max - c >= 4)
				wrong++;
		}
	}
	CHECK_INT(wrong, 0);
}

int main(void)
{
	RUN(test_buf);
	RUN(test_url_decode);
	RUN(test_time);
	RUN(test_secure_equal);
	RUN(test_strings);
	RUN(test_utf8_every_code_point);
	RUN(test_utf8_exhaustive_short);
	RUN(test_utf8_exhaustive_long);
	RUN(test_utf8_named_cases);
	RUN(test_utf8_cut);
	return UNIT_DONE();
}
