/* The pure parts of the Events emitter: the Event object and the token
 * bucket. (Posting is tested end to end: test/e2e/test_metrics.py.) */
#include "events.h"
#include "unit.h"

static struct build *a_build(const char *uid)
{
	struct build_commit cm = {"acme/addons", "16.0", 0, "0123456789abcdef0123456789abcdef01234567"};
	return build_new("b0123abcd", "b0123abcd-odoo", &cm, "12", uid);
}

static void test_object(void)
{
	struct build *b = a_build("u-1");
	/* 2026-12-01T12:00:00.000042Z */
	int64_t us = 1796126400LL * 1000000 + 42;
	json_t *o = events_object(b, "ns1", "pod-7", EVENTS_INIT_FAILED, "boom\n\x01\xc3\xa9", us);
	CHECK_STR(json_string_value(json_object_get(o, "apiVersion")), "events.k8s.io/v1");
	CHECK_STR(json_string_value(json_object_get(o, "kind")), "Event");
	json_t *md = json_object_get(o, "metadata");
	CHECK_STR(json_string_value(json_object_get(md, "namespace")), "ns1");
	char name[64];
	snprintf(name, sizeof name, "b0123abcd.%llx", (unsigned long long)us);
	CHECK_STR(json_string_value(json_object_get(md, "name")), name);
	CHECK_STR(json_string_value(json_object_get(o, "eventTime")), "2026-12-01T12:00:00.000042Z");
	CHECK_STR(json_string_value(json_object_get(o, "reportingController")), "runboat");
	CHECK_STR(json_string_value(json_object_get(o, "reportingInstance")), "pod-7");
	CHECK_STR(json_string_value(json_object_get(o, "reason")), "InitializationFailed");
	CHECK_STR(json_string_value(json_object_get(o, "action")), "Initialize");
	CHECK_STR(json_string_value(json_object_get(o, "type")), "Warning");
	CHECK_STR(json_string_value(json_object_get(o, "note")), "boom????");
	json_t *reg = json_object_get(o, "regarding");
	CHECK_STR(json_string_value(json_object_get(reg, "apiVersion")), "apps/v1");
	CHECK_STR(json_string_value(json_object_get(reg, "kind")), "Deployment");
	CHECK_STR(json_string_value(json_object_get(reg, "name")), "b0123abcd-odoo");
	CHECK_STR(json_string_value(json_object_get(reg, "namespace")), "ns1");
	CHECK_STR(json_string_value(json_object_get(reg, "uid")), "u-1");
	json_decref(o);
	build_free(b);

	/* no uid known: none sent; a long note is cut at the API's limit */
	b = a_build(NULL);
	char note[3000];
	memset(note, 'x', sizeof note - 1);
	note[sizeof note - 1] = '\0';
	o = events_object(b, "ns1", "", EVENTS_STARTED, note, us);
	CHECK(json_object_get(json_object_get(o, "regarding"), "uid") == NULL);
	CHECK_INT(strlen(json_string_value(json_object_get(o, "note"))), EVENTS_NOTE_MAX);
	CHECK_STR(json_string_value(json_object_get(o, "type")), "Normal");
	CHECK_STR(json_string_value(json_object_get(o, "reportingInstance")), "runboat");
	json_decref(o);
	build_free(b);
}

static void test_reasons(void)
{
	for (int r = 0; r < EVENTS_REASON_COUNT; r++) {
		const char *s = events_reason_str((enum events_reason)r);
		CHECK(s[0] >= 'A' && s[0] <= 'Z');
		CHECK(strcmp(s, "Unknown") != 0);
		for (const char *p = s; *p; p++)
			CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'));
		CHECK(events_action_str((enum events_reason)r)[0] != '\0');
	}
	CHECK_STR(events_type_str(EVENTS_CLEANUP_FAILED), "Warning");
	CHECK_STR(events_reason_str(EVENTS_UNDEPLOY_REQUESTED), "UndeployRequested");
}

static void test_bucket(void)
{
	struct events_limiter l = {0};
	uint64_t t = 1000;
	int n = 0;
	while (events_bucket_take(&l, t))
		n++;
	CHECK_INT(n, EVENTS_BURST);
	/* refilled at EVENTS_RATE per second */
	t += 999;
	CHECK(!events_bucket_take(&l, t));
	t += 1;
	CHECK(events_bucket_take(&l, t));
	CHECK(!events_bucket_take(&l, t));
	/* never more than the burst, however long the pause */
	t += 3600 * 1000;
	n = 0;
	while (events_bucket_take(&l, t))
		n++;
	CHECK_INT(n, EVENTS_BURST);
}

int main(void)
{
	RUN(test_object);
	RUN(test_reasons);
	RUN(test_bucket);
	return UNIT_DONE();
}
