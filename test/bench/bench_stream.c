/* Streams and listings at scale, in one process: runboat's real HTTP
 * surface (http, router, api, streams, hub, index) on its own loop thread,
 * with a fake controller (always ready) and synthetic builds upserted
 * straight into the index, as the Deployments informer would; the clients
 * run on a second thread over real loopback sockets.
 *
 * Prints, for 1,000 and 10,000 builds: GET /api/v1/builds (plain and with
 * Accept-Encoding: gzip) latency and size; the time to receive the first
 * snapshot of an SSE and of a WebSocket stream. Then SUBS unfiltered
 * WebSocket subscribers (and NOREAD that never read) while RATE builds per
 * second change for DURATION s: the latency from index_upsert to receipt for
 * every (update, subscriber) pair, the pairs never received, the loop
 * thread's CPU, the RSS.
 *
 *   cmake --build build --target bench_stream && build/bench/bench_stream
 *   build/bench/bench_stream --subs 1000 --rate 100 --duration 20 --noread 2
 *
 * The fake controller replaces src/controller.c as in test/unit/test_api.c
 * (the linker never takes controller.o). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "app.h"
#include "build.h"
#include "config.h"
#include "controller.h"
#include "http.h"
#include "hub.h"
#include "index.h"
#include "log.h"
#include "router.h"
#include "util.h"
#include "ws.h"

/* ---- the fake controller ---- */

#include "fake_controller.h"

/* ---- time, memory ---- */

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* VmRSS and VmHWM in KiB. */
static void rss_kib(long *rss, long *hwm)
{
	*rss = *hwm = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			*rss = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "VmHWM:", 6) == 0)
			*hwm = strtol(line + 6, NULL, 10);
	}
	fclose(f);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* ---- the server thread ---- */

enum cmd_kind { CMD_POPULATE, CMD_UPDATES, CMD_STATS, CMD_QUIT };

static struct {
	uv_loop_t loop;
	uv_async_t async;
	uv_sem_t done;
	struct app app;
	struct api *api;
	int port;
	/* the command being run (one at a time) */
	enum cmd_kind cmd;
	size_t arg_n;
	double arg_rate, arg_duration;
	/* builds */
	size_t n_builds;
	/* updates */
	uv_timer_t upd_timer;
	uint64_t upd_start_ns;
	size_t upd_sent;
	size_t upd_total;
	/* stats out */
	uint64_t loop_cpu_ns;
	unsigned long conflated, kicked;
	size_t subscribers;
} srv;

#define MAX_UPDATES 1000000
static _Atomic uint64_t upd_time_ns[MAX_UPDATES]; /* index_upsert of update seq */

static _Atomic uint64_t upd_end_ns; /* when the last update was upserted */

static char (*names)[40];

static struct build *make_build(size_t i)
{
	static const char *branches[] = {"14.0", "15.0", "16.0", "17.0", "18.0"};
	char repo[32], sha[41], dname[64];
	snprintf(repo, sizeof repo, "oca/repo%zu", i % 50);
	snprintf(sha, sizeof sha, "%08x0d35a10f161b410f2baa3d416a338d19", (unsigned)i);
	struct build_commit c = {repo, branches[(i / 50) % 5], (i % 3 == 0) ? (int)(i % 9000) + 1 : 0,
				 sha};
	snprintf(dname, sizeof dname, "%s-odoo", names[i]);
	struct build *b = build_new(names[i], dname, &c, "1", "uid");
	b->init_status = BUILD_INIT_SUCCEEDED;
	b->created = 1700000000 + (int64_t)i;
	b->created_ms = b->created * 1000;
	b->last_scaled = b->created;
	b->has_finalizer = true;
	b->status = build_derive_status(b);
	return b;
}

static void on_updates_tick(uv_timer_t *t)
{
	UNUSED(t);
	uint64_t now = mono_ns();
	double elapsed = (double)(now - srv.upd_start_ns) / 1e9;
	size_t due = (size_t)(elapsed * srv.arg_rate) + 1;
	if (due > srv.upd_total)
		due = srv.upd_total;
	while (srv.upd_sent < due) {
		size_t seq = srv.upd_sent++;
		const struct build *cur = index_find(srv.app.index, names[seq % srv.n_builds]);
		struct build *b = build_dup(cur);
		char why[32];
		snprintf(why, sizeof why, "u%zu", seq);
		build_set_reason(b, why);
		b->last_scaled = 1800000000 + (int64_t)seq;
		atomic_store_explicit(&upd_time_ns[seq], mono_ns(), memory_order_release);
		index_upsert(srv.app.index, b);
	}
	if (srv.upd_sent >= srv.upd_total) {
		uv_timer_stop(&srv.upd_timer);
		atomic_store(&upd_end_ns, mono_ns());
	}
}

static void on_command(uv_async_t *a)
{
	UNUSED(a);
	switch (srv.cmd) {
	case CMD_POPULATE:
		while (srv.n_builds < srv.arg_n) {
			index_upsert(srv.app.index, make_build(srv.n_builds));
			srv.n_builds++;
		}
		uv_sem_post(&srv.done);
		break;
	case CMD_UPDATES:
		srv.upd_sent = 0;
		srv.upd_total = (size_t)(srv.arg_rate * srv.arg_duration);
		if (srv.upd_total > MAX_UPDATES)
			srv.upd_total = MAX_UPDATES;
		srv.upd_start_ns = mono_ns();
		uv_timer_start(&srv.upd_timer, on_updates_tick, 0, 2);
		break;
	case CMD_STATS:
		srv.loop_cpu_ns = thread_cpu_ns();
		srv.conflated = hub_conflated(srv.app.hub);
		srv.kicked = hub_kicked(srv.app.hub);
		srv.subscribers = hub_subscribers(srv.app.hub);
		uv_sem_post(&srv.done);
		break;
	case CMD_QUIT:
		http_server_shutdown(srv.app.http, NULL, NULL);
		uv_close((uv_handle_t *)&srv.async, NULL);
		uv_close((uv_handle_t *)&srv.upd_timer, NULL);
		break;
	}
}

static void server_setup(void)
{
	uv_loop_init(&srv.loop);
	uv_sem_init(&srv.done, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_connections = 8192;
	lim.max_connections_per_client = 0;
	srv.api = bench_app_start(&srv.app, &srv.loop, &srv, "http://runboat.test", 0, &lim,
				  "127.0.0.1:0");
	srv.port = http_server_port(srv.app.http);
	uv_async_init(&srv.loop, &srv.async, on_command);
	uv_timer_init(&srv.loop, &srv.upd_timer);
}

static void *server_main(void *arg)
{
	UNUSED(arg);
	uv_run(&srv.loop, UV_RUN_DEFAULT);
	return NULL;
}

/* Runs a command on the loop thread and waits for it. */
static void command(enum cmd_kind k)
{
	srv.cmd = k;
	uv_async_send(&srv.async);
	if (k != CMD_QUIT && k != CMD_UPDATES)
		uv_sem_wait(&srv.done);
}

/* ---- clients ---- */

static int connect_server(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		perror("connect");
		exit(1);
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void send_all(int fd, const char *s)
{
	size_t n = strlen(s), off = 0;
	while (off < n) {
		ssize_t w = write(fd, s + off, n - off);
		if (w <= 0) {
			perror("write");
			exit(1);
		}
		off += (size_t)w;
	}
}

static char rbuf[1 << 20];

/* GET /api/v1/builds: ns to the last body byte; body size, whether gzip. */
static uint64_t get_builds(bool gzip, size_t *body, bool *gzipped)
{
	int fd = connect_server();
	char req[256];
	snprintf(req, sizeof req,
		 "GET /api/v1/builds HTTP/1.1\r\nHost: runboat.test\r\n%sConnection: close\r\n\r\n",
		 gzip ? "Accept-Encoding: gzip\r\n" : "");
	uint64_t t0 = mono_ns();
	send_all(fd, req);
	struct buf head = {0};
	size_t got = 0, want = (size_t)-1, hlen = 0;
	for (;;) {
		ssize_t n = read(fd, rbuf, sizeof rbuf);
		if (n <= 0)
			break;
		if (!hlen) {
			buf_append(&head, rbuf, (size_t)n);
			char *e = strstr(head.data, "\r\n\r\n");
			if (!e)
				continue;
			hlen = (size_t)(e + 4 - head.data);
			const char *cl = strcasestr(head.data, "content-length:");
			want = cl && cl < e ? strtoull(cl + 15, NULL, 10) : (size_t)-1;
			const char *ce = strcasestr(head.data, "content-encoding: gzip");
			*gzipped = ce && ce < e;
			got = head.len - hlen;
		} else {
			got += (size_t)n;
		}
		if (got >= want)
			break;
	}
	uint64_t t = mono_ns() - t0;
	close(fd);
	buf_free(&head);
	*body = got;
	return t;
}

/* Counts occurrences of pat in a stream read in pieces. */
struct counter {
	char carry[16];
	size_t carry_len;
	size_t count;
};

static void count_in(struct counter *c, const char *pat, const char *data, size_t n)
{
	size_t pl = strlen(pat);
	/* the junction with the previous piece */
	char j[32];
	size_t take = n < pl - 1 ? n : pl - 1;
	memcpy(j, c->carry, c->carry_len);
	memcpy(j + c->carry_len, data, take);
	size_t jl = c->carry_len + take;
	for (size_t i = 0; i + pl <= jl; i++)
		if (memcmp(j + i, pat, pl) == 0 && i < c->carry_len)
			c->count++;
	for (const char *p = data; (p = memmem(p, (size_t)(data + n - p), pat, pl)); p += pl)
		c->count++;
	size_t keep = pl - 1;
	if (n >= keep) {
		memcpy(c->carry, data + n - keep, keep);
		c->carry_len = keep;
	} else {
		size_t old = c->carry_len + n > keep ? c->carry_len + n - keep : 0;
		memmove(c->carry, c->carry + old, c->carry_len - old);
		memcpy(c->carry + c->carry_len - old, data, n);
		c->carry_len = c->carry_len - old + n;
	}
}

static const char WS_REQ[] = "GET /api/v1/ws HTTP/1.1\r\nHost: runboat.test\r\n"
			     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
			     "Sec-WebSocket-Version: 13\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

static const char WS_REQ_BATCH[] = "GET /api/v1/ws?batch=1 HTTP/1.1\r\nHost: runboat.test\r\n"
				   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
				   "Sec-WebSocket-Version: 13\r\n"
				   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/* ns from the request to the n-th "upd" event of a fresh stream (batched:
 * to its end-of-snapshot marker, after n "upd"). */
static uint64_t snapshot(bool ws, bool batched, size_t n)
{
	int fd = connect_server();
	uint64_t t0 = mono_ns();
	if (batched)
		send_all(fd, ws ? WS_REQ_BATCH
				: "GET /api/v1/build-events?batch=1 HTTP/1.1\r\nHost: runboat.test\r\n\r\n");
	else
		send_all(fd, ws ? WS_REQ : "GET /api/v1/build-events HTTP/1.1\r\nHost: runboat.test\r\n\r\n");
	struct counter c = {0}, marker = {0};
	while (batched ? !marker.count : c.count < n) {
		ssize_t r = read(fd, rbuf, sizeof rbuf);
		if (r <= 0) {
			fprintf(stderr, "snapshot: connection closed after %zu events\n", c.count);
			break;
		}
		count_in(&c, "{\"event\":\"upd\"", rbuf, (size_t)r);
		if (batched)
			count_in(&marker, "\"event\":\"synced\"", rbuf, (size_t)r); /* <= 16 chars */
	}
	if (batched && c.count != n)
		fprintf(stderr, "snapshot: %zu events before the marker, expected %zu\n", c.count, n);
	uint64_t t = mono_ns() - t0;
	close(fd);
	return t;
}

static void print_ms_series(const char *what, uint64_t *v, size_t n)
{
	printf("  %-34s first %7.1f ms", what, (double)v[0] / 1e6);
	qsort(v + 1, n - 1, sizeof *v, cmp_u64);
	printf("  then min %7.1f  p50 %7.1f  max %7.1f ms (%zu runs)\n", (double)v[1] / 1e6,
	       (double)v[1 + (n - 1) / 2] / 1e6, (double)v[n - 1] / 1e6, n - 1);
}

static void bench_snapshots(size_t n, int runs)
{
	command(CMD_POPULATE);
	long rss, hwm;
	rss_kib(&rss, &hwm);
	printf("%zu builds (VmRSS %ld KiB)\n", n, rss);
	uint64_t v[32];
	size_t body = 0;
	bool gz = false;
	for (int i = 0; i < runs; i++)
		v[i] = get_builds(false, &body, &gz);
	char what[80];
	snprintf(what, sizeof what, "GET /api/v1/builds (%zu B)", body);
	print_ms_series(what, v, (size_t)runs);
	for (int i = 0; i < runs; i++)
		v[i] = get_builds(true, &body, &gz);
	snprintf(what, sizeof what, "same, gzip asked (%zu B%s)", body, gz ? ", gzip" : ", plain");
	print_ms_series(what, v, (size_t)runs);
	for (int i = 0; i < runs; i++)
		v[i] = snapshot(false, false, n);
	print_ms_series("SSE snapshot", v, (size_t)runs);
	for (int i = 0; i < runs; i++)
		v[i] = snapshot(true, false, n);
	print_ms_series("WebSocket snapshot", v, (size_t)runs);
	for (int i = 0; i < runs; i++)
		v[i] = snapshot(false, true, n);
	print_ms_series("SSE snapshot, batch=1 (to synced)", v, (size_t)runs);
	for (int i = 0; i < runs; i++)
		v[i] = snapshot(true, true, n);
	print_ms_series("WebSocket snapshot, batch=1", v, (size_t)runs);
	fflush(stdout);
}

/* ---- fan-out ---- */

#define HIST_US 10000000 /* 10 s in 1 us... */
#define HIST_BIN_US 50
#define HIST_BINS (HIST_US / HIST_BIN_US)
static uint32_t hist[HIST_BINS + 1];

struct sub {
	int fd;
	bool upgraded;
	struct buf in;
	size_t got;      /* messages with an update */
	size_t snapshot; /* other messages */
};

static void record_latency(uint64_t ns)
{
	uint64_t bin = ns / 1000 / HIST_BIN_US;
	hist[bin > HIST_BINS ? HIST_BINS : bin]++;
}

static double hist_pct(double p, uint64_t total)
{
	uint64_t want = (uint64_t)(p / 100.0 * (double)total + 0.5), acc = 0;
	if (want == 0)
		want = 1;
	for (size_t i = 0; i <= HIST_BINS; i++) {
		acc += hist[i];
		if (acc >= want)
			return (double)(i + 1) * HIST_BIN_US / 1000.0;
	}
	return -1;
}

/* Parses frames in d[0..n): returns the bytes consumed (whole frames). */
static size_t parse_frames(struct sub *s, const unsigned char *d, size_t n)
{
	size_t off = 0;
	while (n - off >= 2) {
		size_t len = d[off + 1] & 0x7f, hl = 2;
		if (len == 126) {
			if (n - off < 4)
				break;
			len = ((size_t)d[off + 2] << 8) | d[off + 3];
			hl = 4;
		} else if (len == 127) {
			if (n - off < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = (len << 8) | d[off + 2 + i];
			hl = 10;
		}
		if (n - off < hl + len)
			break;
		if ((d[off] & 0x0f) == 1) {
			const char *p = (const char *)d + off + hl;
			const char *r = memmem(p, len, "\"reason\":\"u", 11);
			if (r) {
				size_t seq = strtoull(r + 11, NULL, 10);
				uint64_t t = atomic_load_explicit(&upd_time_ns[seq], memory_order_acquire);
				record_latency(mono_ns() - t);
				s->got++;
			} else {
				s->snapshot++;
			}
		}
		off += hl + len;
	}
	return off;
}

/* What a subscriber received (data, n): the 101, then unmasked frames.
 * Only a partial frame is kept between reads, so that the client's memory
 * stays small beside runboat's in this process. */
static void sub_parse(struct sub *s, const char *data, size_t n)
{
	if (!s->upgraded || s->in.len) {
		buf_append(&s->in, data, n);
		data = s->in.data;
		n = s->in.len;
	}
	size_t off = 0;
	if (!s->upgraded) {
		const char *e = memmem(data, n, "\r\n\r\n", 4);
		if (!e)
			return;
		if (strncmp(data, "HTTP/1.1 101", 12) != 0) {
			fprintf(stderr, "ws: refused: %.60s\n", data);
			exit(1);
		}
		s->upgraded = true;
		off = (size_t)(e + 4 - data);
	}
	off += parse_frames(s, (const unsigned char *)data + off, n - off);
	if (data == s->in.data) {
		buf_consume(&s->in, off);
	} else if (off < n) {
		buf_append(&s->in, data + off, n - off);
	}
	if (!s->in.len)
		buf_free(&s->in);
}

static void bench_fanout(size_t nsubs, size_t noread, double rate, double duration, size_t nbuilds)
{
	srv.arg_n = nbuilds;
	command(CMD_POPULATE);
	int ep = epoll_create1(0);
	struct sub *subs = xcalloc(nsubs, sizeof *subs);
	int *silent = xcalloc(noread + 1, sizeof *silent);
	uint64_t t0 = mono_ns();
	for (size_t i = 0; i < nsubs; i++) {
		subs[i].fd = connect_server();
		send_all(subs[i].fd, WS_REQ);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &subs[i]};
		epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev);
	}
	for (size_t i = 0; i < noread; i++) {
		silent[i] = connect_server();
		int small = 4096;
		setsockopt(silent[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
		send_all(silent[i], WS_REQ);
	}
	/* every subscriber gets its snapshot first */
	struct epoll_event evs[256];
	size_t ready = 0;
	while (ready < nsubs) {
		int n = epoll_wait(ep, evs, 256, 10000);
		if (n <= 0) {
			fprintf(stderr, "fanout: only %zu of %zu snapshots after 10 s\n", ready, nsubs);
			break;
		}
		for (int i = 0; i < n; i++) {
			struct sub *s = evs[i].data.ptr;
			ssize_t r = read(s->fd, rbuf, sizeof rbuf);
			if (r <= 0)
				continue;
			size_t before = s->snapshot;
			sub_parse(s, rbuf, (size_t)r);
			if (before < nbuilds && s->snapshot >= nbuilds)
				ready++;
		}
	}
	long rss_c, hwm_c;
	rss_kib(&rss_c, &hwm_c);
	printf("fan-out: %zu WebSocket subscribers (+%zu that never read), %zu builds: "
	       "all connected with their snapshot in %.0f ms; VmRSS %ld KiB\n",
	       nsubs, noread, nbuilds, (double)(mono_ns() - t0) / 1e6, rss_c);
	command(CMD_STATS);
	uint64_t cpu0 = srv.loop_cpu_ns, s0 = mono_ns();
	unsigned long conf0 = srv.conflated;
	struct rusage ru0, ru1;
	getrusage(RUSAGE_THREAD, &ru0);
	srv.arg_rate = rate;
	srv.arg_duration = duration;
	uint64_t w0 = mono_ns(), w1 = 0;
	atomic_store(&upd_end_ns, 0);
	command(CMD_UPDATES);
	/* read for 3 s more after the last update */
	size_t total = (size_t)(rate * duration);
	long peak_rss = 0;
	uint64_t last_sample = 0;
	for (;;) {
		uint64_t now = mono_ns();
		if (now - last_sample > 200000000ULL) {
			long rss, hwm;
			rss_kib(&rss, &hwm);
			if (rss > peak_rss)
				peak_rss = rss;
			last_sample = now;
		}
		size_t got = 0;
		for (size_t i = 0; i < nsubs; i++)
			got += subs[i].got;
		if (!w1)
			w1 = atomic_load(&upd_end_ns);
		if (w1 && (got >= total * nsubs || now - w1 > 3000000000ULL))
			break;
		int n = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			struct sub *s = evs[i].data.ptr;
			ssize_t r = read(s->fd, rbuf, sizeof rbuf);
			if (r <= 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
				continue;
			}
			sub_parse(s, rbuf, (size_t)r);
		}
	}
	getrusage(RUSAGE_THREAD, &ru1);
	command(CMD_STATS);
	uint64_t cpu = srv.loop_cpu_ns - cpu0;
	double span = (double)(mono_ns() - s0) / 1e9;
	uint64_t pairs = 0;
	size_t short_subs = 0;
	for (size_t i = 0; i < nsubs; i++) {
		pairs += subs[i].got;
		if (subs[i].got < total)
			short_subs++;
	}
	double wall = (double)(w1 - w0) / 1e9;
	double ccpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
			       ru0.ru_stime.tv_sec) +
		      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
			       ru0.ru_stime.tv_usec) / 1e6;
	long rss, hwm;
	rss_kib(&rss, &hwm);
	printf("  %zu updates in %.1f s (%.0f/s), %" PRIu64 " of %zu (update, subscriber) pairs "
	       "received (%.1f%%), %zu subscribers short\n",
	       total, wall, (double)total / wall, pairs, total * nsubs,
	       100.0 * (double)pairs / (double)(total * nsubs), short_subs);
	printf("  latency index_upsert -> received: p50 %.2f  p95 %.2f  p99 %.2f  p99.9 %.2f ms\n",
	       hist_pct(50, pairs), hist_pct(95, pairs), hist_pct(99, pairs), hist_pct(99.9, pairs));
	printf("  runboat loop thread CPU %.2f s over %.1f s (%.0f%% of a core); client thread %.0f%%\n",
	       (double)cpu / 1e9, span, 100.0 * (double)cpu / 1e9 / span, 100.0 * ccpu / span);
	printf("  conflated %lu, subscribers kicked %lu, still subscribed %zu; VmRSS peak %ld KiB, "
	       "now %ld KiB\n",
	       srv.conflated - conf0, srv.kicked, srv.subscribers, peak_rss, rss);
	fflush(stdout);
	for (size_t i = 0; i < nsubs; i++) {
		close(subs[i].fd);
		buf_free(&subs[i].in);
	}
	for (size_t i = 0; i < noread; i++)
		close(silent[i]);
	free(subs);
	free(silent);
	close(ep);
	/* let the server see the closes */
	usleep(300000);
}

int main(int argc, char **argv)
{
	size_t nsubs = 1000, noread = 2, fan_builds = 100;
	double rate = 100, duration = 20;
	int runs = 6;
	bool skip_fanout = false, skip_snap = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
		if (!strcmp(a, "--subs"))
			nsubs = strtoull(v, NULL, 10), i++;
		else if (!strcmp(a, "--noread"))
			noread = strtoull(v, NULL, 10), i++;
		else if (!strcmp(a, "--rate"))
			rate = atof(v), i++;
		else if (!strcmp(a, "--duration"))
			duration = atof(v), i++;
		else if (!strcmp(a, "--fan-builds"))
			fan_builds = strtoull(v, NULL, 10), i++;
		else if (!strcmp(a, "--runs"))
			runs = atoi(v), i++;
		else if (!strcmp(a, "--no-fanout"))
			skip_fanout = true;
		else if (!strcmp(a, "--no-snapshots"))
			skip_snap = true;
		else {
			fprintf(stderr, "usage: %s [--subs N] [--noread N] [--rate R] [--duration S] "
					"[--fan-builds N] [--runs N] [--no-fanout] [--no-snapshots]\n", argv[0]);
			return 2;
		}
	}
	if (runs < 2 || runs > 32)
		runs = 6;
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	log_set_level(LOG_WARN);
	log_set_access(false);
	names = xcalloc(10000, sizeof *names);
	for (size_t i = 0; i < 10000; i++)
		snprintf(names[i], sizeof names[i], "b%08x%024zx", (unsigned)(i * 2654435761u), i);
	server_setup();
	pthread_t th;
	pthread_create(&th, NULL, server_main, NULL);
	long rss, hwm;
	rss_kib(&rss, &hwm);
	printf("bench_stream: port %d, VmRSS at start %ld KiB\n", srv.port, rss);
	if (!skip_fanout)
		bench_fanout(nsubs, noread, rate, duration, fan_builds);
	if (!skip_snap) {
		srv.arg_n = 1000;
		bench_snapshots(1000, runs);
		srv.arg_n = 10000;
		bench_snapshots(10000, runs);
	}
	rss_kib(&rss, &hwm);
	printf("VmRSS at the end %ld KiB, VmHWM %ld KiB\n", rss, hwm);
	command(CMD_QUIT);
	pthread_join(th, NULL);
	return 0;
}
