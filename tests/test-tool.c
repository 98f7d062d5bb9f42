/* SPDX-License-Identifier: MIT */
/*
 * dmabuf-ls, run as a program against buffers this process exports and a
 * child process holds: the text table (mappings apart from the library's
 * own views, RSS and PSS, per-process totals), what the exporter tells
 * (names, attachments), --json, --dot rendered by Graphviz at 100 buffers,
 * the filters, odd names, an exporter that does not answer, and bad
 * arguments.
 *
 * Other programs on the machine may have libdmabuf buffers too: every check
 * looks for this test's own inodes, and counts only under --pid. Exporters
 * are asked only under --pid (or --name, with --pid): a query imports each
 * buffer shown for a moment, and an unfiltered one imported the buffers of
 * whatever ran beside it, such as another test of the suite, which then saw
 * its buffer held by a peer (test-testkit's release after a settle, 32
 * failures in 300 runs beside a loop of unfiltered dmabuf-ls).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "exporter.h"

#define PAGE 4096u
#define HOLDER_COMM "tool-holder"

static char tool[PATH_MAX + 32];

/* The tool's --timeout when the scene's exporter serves (a service
 * thread): it answers, so this is a hang guard only. The default 1 s is a
 * window a loaded machine can miss ("exporter did not describe it"). */
#define SERVED "--timeout 30000 "

/* The tool is built beside the tests: <build>/tests/../tools/dmabuf-ls. */
static void find_tool(const char *argv0)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n > 0) {
		self[n] = '\0';
	} else {
		snprintf(self, sizeof(self), "%s", argv0);
	}
	slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(self, sizeof(self), ".");
	snprintf(tool, sizeof(tool), "%s/../tools/dmabuf-ls", self);
}

/* Runs a shell command; returns its output (free it) and exit status. */
static char *run_cmd(const char *cmd, int *status)
{
	size_t len = 0, cap = 65536;
	char *out = malloc(cap);
	FILE *f;
	size_t n;
	int st;

	assert_non_null(out);
	f = popen(cmd, "re");
	assert_non_null(f);
	while ((n = fread(out + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len - 1 == 0) {
			cap *= 2;
			out = realloc(out, cap);
			assert_non_null(out);
		}
	}
	out[len] = '\0';
	st = pclose(f);
	assert_true(st != -1 && WIFEXITED(st));
	*status = WEXITSTATUS(st);
	return out;
}

/* The tool with args, stdout only (stderr too with with_err). */
static char *run_tool_err(const char *args, bool with_err, int *status)
{
	char cmd[PATH_MAX + 512];

	assert_int_equal(access(tool, X_OK), 0);
	snprintf(cmd, sizeof(cmd), "'%s' %s %s", tool, args, with_err ? "2>&1" : "2>/dev/null");
	return run_cmd(cmd, status);
}

static char *run_tool(const char *args, int *status)
{
	return run_tool_err(args, false, status);
}

/* The buffer's line in the table: "<ino> <size> <access> <exp-pid> <exporter>". */
struct buf_row {
	char size[32], access[8], exp_pid[32], exp_name[128];
	char detail[256];	/* the line after: what the exporter said */
	const char *line;
};

/* One holder line: "  <pid> <comm> <maps> <mapped> <rss> <pss> <views> <fds> [exporter]". */
struct holder_row {
	int pid;
	char comm[64];
	unsigned long maps, views;
	unsigned long long mapped, rss, pss;
	char fds[128];
	int exporter;
};

static int find_buf(const char *out, ino_t ino, struct buf_row *row)
{
	for (const char *l = out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		unsigned long long v;
		const char *next;

		if (*l < '0' || *l > '9' || sscanf(l, "%llu", &v) != 1 || v != (unsigned long long)ino)
			continue;
		memset(row, 0, sizeof(*row));
		row->line = l;
		next = strchr(l, '\n');
		if (next)
			sscanf(next + 1, "%255[^\n]", row->detail);
		return sscanf(l, "%*u %31s %7s %31s %127[^\n]", row->size, row->access,
			      row->exp_pid, row->exp_name) == 4;
	}
	return 0;
}

static int find_holder(const struct buf_row *b, pid_t pid, struct holder_row *row)
{
	const char *l = strchr(b->line, '\n');

	for (l = l ? l + 1 : NULL; l && l[0] == ' ' && l[1] == ' ';
	     l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *eol = strchr(l, '\n');
		int n;

		memset(row, 0, sizeof(*row));
		n = sscanf(l, " %d %63s %lu %llu %llu %llu %lu %127s", &row->pid, row->comm,
			   &row->maps, &row->mapped, &row->rss, &row->pss, &row->views, row->fds);
		if (n != 8 || row->pid != pid)
			continue;
		row->exporter = (int)(strstr(l, "[exporter]") &&
				      (!eol || strstr(l, "[exporter]") < eol));
		return 1;
	}
	return 0;
}

/* The PER PROCESS row of pid: buffers fds maps views size mapped rss pss. */
struct total_row {
	unsigned long buffers, fds, maps, views;
	unsigned long long size, mapped, rss, pss;
};

static int find_total(const char *out, pid_t pid, struct total_row *t)
{
	const char *l = strstr(out, "\nPER PROCESS\n");

	for (l = l ? strchr(l + 1, '\n') : NULL; l; l = strchr(l + 1, '\n')) {
		int p;

		memset(t, 0, sizeof(*t));
		if (sscanf(l + 1, " %d %*s %lu %lu %lu %lu %llu %llu %llu %llu", &p, &t->buffers,
			   &t->fds, &t->maps, &t->views, &t->size, &t->mapped, &t->rss,
			   &t->pss) == 9 && p == pid)
			return 1;
	}
	return 0;
}

/* A holder process: receives fds and maps them (reading every page), as an
 * importer would. */
enum { HOLD_MAP = 'm', HOLD_MAP_CLOSE = 'M', HOLD_KEEP = 'k', HOLD_QUIT = 'q' };
#define MAX_HELD 128

static int holder_main(void *arg)
{
	const int *sv = arg;
	int sock = sv[1];
	struct { void *p; size_t len; int fd; } held[MAX_HELD];
	int n = 0;

	/* Only the parent keeps the other end: when it goes, or loses its
	 * end in a failed test, the recv below sees EOF and this holder
	 * exits, instead of keeping the test's output pipe open for ever
	 * (which turned one failed check into a suite timeout). */
	close(sv[0]);
	prctl(PR_SET_NAME, HOLDER_COMM, 0, 0, 0);
	for (;;) {
		unsigned char msg[16];
		size_t len = 0;
		uint64_t size;
		int fd = -1;
		void *p = NULL;

		child_check(dmabuf_recv_fd(sock, &fd, msg, sizeof(msg), &len) == 0);
		if (msg[0] == HOLD_QUIT)
			break;
		child_check(len == 1 + sizeof(size) && fd >= 0 && n < MAX_HELD);
		memcpy(&size, msg + 1, sizeof(size));
		if (msg[0] != HOLD_KEEP) {
			p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
			child_check(p != MAP_FAILED);
			for (size_t off = 0; off < size; off += PAGE)
				(void)*(volatile const char *)((const char *)p + off);
		}
		if (msg[0] == HOLD_MAP_CLOSE) {
			close(fd);
			fd = -1;
		}
		held[n].p = p;
		held[n].len = size;
		held[n].fd = fd;
		n++;
		/* tells the parent which fd number it holds (-1: none) */
		child_check(dmabuf_send_fd(sock, -1, &fd, sizeof(fd)) == 0);
	}
	for (int i = 0; i < n; i++) {
		if (held[i].p)
			munmap(held[i].p, held[i].len);
		if (held[i].fd >= 0)
			close(held[i].fd);
	}
	close(sock);
	return 0;
}

struct scene {
	int sock;
	pid_t child;
	bool serving;
	struct dmabuf_ctx *ctx;
	struct test_exporter tx;
	struct dmabuf *rw, *ro, *own;
	ino_t rw_ino, ro_ino, own_ino;
	int child_rw_fd;	/* the child's fd number for rw */
	void *rw_map;		/* the exporter's own mapping of rw */
	struct dmabuf_device *dev;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
};

static struct dmabuf *export_named(struct dmabuf_ctx *ctx, struct test_exporter *tx,
				   const char *name, uint64_t size, int flags)
{
	struct dmabuf_export_info info = {
		.exp_name = name, .ops = &tx_ops, .size = size, .flags = flags,
		.priv = tx, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	return buf;
}

static ino_t ino_of(struct dmabuf *buf)
{
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	struct stat st;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	return st.st_ino;
}

/* Gives the child the buffer; returns the child's fd number for it. */
static int give(int sock, struct dmabuf *buf, char how)
{
	unsigned char msg[1 + sizeof(uint64_t)];
	uint64_t size = dmabuf_get_size(buf);
	int fd = dmabuf_fd(buf, O_CLOEXEC), rfd = -1, child_fd = -2;
	size_t len = 0;

	assert_true(fd >= 0);
	msg[0] = (unsigned char)how;
	memcpy(msg + 1, &size, sizeof(size));
	assert_int_equal(dmabuf_send_fd(sock, fd, msg, sizeof(msg)), 0);
	close(fd);
	assert_int_equal(dmabuf_recv_fd(sock, &rfd, &child_fd, sizeof(child_fd), &len), 0);
	assert_int_equal(rfd, -1);
	assert_int_equal(len, sizeof(child_fd));
	return child_fd;
}

static void start_holder(int *sock, pid_t *child)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	*child = harness_fork(holder_main, sv);
	close(sv[1]);
	*sock = sv[0];
}

static void stop_holder(int sock, pid_t child)
{
	unsigned char q = HOLD_QUIT;

	assert_int_equal(dmabuf_send_fd(sock, -1, &q, 1), 0);
	assert_int_equal(harness_wait(child), 0);
	close(sock);
}

/*
 * The child is forked before anything is exported, so it holds only what it
 * is given: rw (an fd and a mapping) and ro (a mapping, its fd closed).
 * own stays with the exporter. The exporter maps rw itself (a mapping of
 * the program; the library has no view of rw) and writes every page; the child
 * reads every page: each page of rw is then mapped by two processes.
 * rw is named "frame-7" and attached to a device that maps it. With
 * serving, a service thread answers the tool's questions.
 */
static void scene_setup(struct scene *s, bool serving)
{
	memset(s, 0, sizeof(*s));
	start_holder(&s->sock, &s->child);

	s->ctx = tx_ctx_new(0);
	s->serving = serving;
	s->rw = export_named(s->ctx, &s->tx, "tool-rw", 5 * PAGE, O_RDWR);
	s->ro = export_named(s->ctx, &s->tx, "tool-ro", 3 * PAGE, O_RDONLY);
	s->own = export_named(s->ctx, &s->tx, "tool-own", 2 * PAGE, O_RDWR);
	s->rw_ino = ino_of(s->rw);
	s->ro_ino = ino_of(s->ro);
	s->own_ino = ino_of(s->own);
	assert_int_equal(dmabuf_mmap(s->rw, 0, 5 * PAGE, PROT_READ | PROT_WRITE, &s->rw_map), 0);
	memset(s->rw_map, 0x5a, 5 * PAGE);
	assert_int_equal(dmabuf_set_name(s->rw, "frame-7"), 0);
	assert_int_equal(dmabuf_set_name(s->own, ""), 0);
	s->dev = tx_device(s->ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	assert_int_equal(dmabuf_attach(s->rw, s->dev, &s->att), 0);
	assert_int_equal(dmabuf_map_attachment(s->att, DMABUF_BIDIRECTIONAL, &s->sgt), 0);
	s->child_rw_fd = give(s->sock, s->rw, HOLD_MAP);
	assert_true(s->child_rw_fd >= 0);
	assert_int_equal(give(s->sock, s->ro, HOLD_MAP_CLOSE), -1);
	if (serving)
		assert_int_equal(dmabuf_ctx_start_thread(s->ctx), 0);
}

static void scene_teardown(struct scene *s)
{
	stop_holder(s->sock, s->child);
	if (s->serving)
		assert_int_equal(dmabuf_ctx_stop_thread(s->ctx), 0);
	assert_int_equal(dmabuf_unmap_attachment(s->att, s->sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(s->rw, s->att), 0);
	assert_int_equal(dmabuf_device_destroy(s->dev), 0);
	assert_int_equal(dmabuf_munmap(s->rw, s->rw_map, 5 * PAGE), 0);
	assert_int_equal(dmabuf_put(s->rw), 0);
	assert_int_equal(dmabuf_put(s->ro), 0);
	assert_int_equal(dmabuf_put(s->own), 0);
	dmabuf_ctx_destroy(s->ctx);
}

static void table_names_exporter_size_and_holders(void **state)
{
	struct scene s;
	struct buf_row b;
	struct holder_row h;
	struct total_row t;
	char num[64];
	int status;
	char *out;

	scene_setup(&s, true);
	/* --pid: this process holds every buffer of the scene, and the
	 * exporters of no other program are asked (the header) */
	snprintf(num, sizeof(num), SERVED "--pid %d", (int)getpid());
	out = run_tool(num, &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "INODE"));
	snprintf(num, sizeof(num), "%d", (int)getpid());

	/* rw: exporter, size, access, and what the exporter says */
	assert_true(find_buf(out, s.rw_ino, &b));
	assert_string_equal(b.exp_name, "tool-rw");
	assert_string_equal(b.size, "20480");
	assert_string_equal(b.access, "rw");
	assert_string_equal(b.exp_pid, num);
	{
		static const char want[] = "  name \"frame-7\", 1 attachment, 1 device mapping, "
					   "0 vmaps, backing allocated";

		if (strncmp(b.detail, want, strlen(want)) != 0)
			fail_msg("rw's detail line: '%s'", b.detail);
	}
	/* the exporter: the dma-buf file and the probe OFD; its own mapping
	 * (shared page by page with the child: half of each page's PSS) and
	 * no view of the library's: the device map made none, the device did
	 * no DMA (a view would not count as a mapping of the program) */
	assert_true(find_holder(&b, getpid(), &h));
	assert_true(h.exporter);
	assert_non_null(strstr(h.fds, "(probe)"));
	assert_int_equal(h.maps, 1);
	assert_int_equal(h.mapped, 5 * PAGE);
	assert_int_equal(h.rss, 5 * PAGE);
	assert_int_equal(h.pss, 5 * PAGE / 2);
	assert_int_equal(h.views, 0);
	/* the child: an fd and one mapping */
	assert_true(find_holder(&b, s.child, &h));
	assert_false(h.exporter);
	assert_string_equal(h.comm, HOLDER_COMM);
	assert_int_equal(h.maps, 1);
	assert_int_equal(h.mapped, 5 * PAGE);
	assert_int_equal(h.rss, 5 * PAGE);
	assert_int_equal(h.pss, 5 * PAGE / 2);
	assert_int_equal(h.views, 0);
	snprintf(num, sizeof(num), "%d", s.child_rw_fd);
	assert_string_equal(h.fds, num);

	/* ro: read-only; the exporter has two views (writable, read-only)
	 * and no mapping; the child holds only a mapping, whose pages only it
	 * touched */
	assert_true(find_buf(out, s.ro_ino, &b));
	assert_string_equal(b.exp_name, "tool-ro");
	assert_string_equal(b.size, "12288");
	assert_string_equal(b.access, "ro");
	assert_non_null(strstr(b.detail, "  no name, 0 attachments, 0 device mappings"));
	assert_true(find_holder(&b, getpid(), &h));
	assert_int_equal(h.maps, 0);
	assert_int_equal(h.mapped, 0);
	assert_int_equal(h.views, 2);
	assert_true(find_holder(&b, s.child, &h));
	assert_int_equal(h.maps, 1);
	assert_int_equal(h.mapped, 3 * PAGE);
	assert_int_equal(h.pss, 3 * PAGE);
	assert_string_equal(h.fds, "-");

	/* own: the child is not a holder; its name is set, and empty */
	assert_true(find_buf(out, s.own_ino, &b));
	assert_non_null(strstr(b.detail, "  name \"\", 0 attachments"));
	assert_string_equal(b.size, "8192");
	assert_true(find_holder(&b, getpid(), &h));
	assert_int_equal(h.maps, 0);
	assert_false(find_holder(&b, s.child, &h));

	/* per-process totals: the child holds rw and ro */
	assert_true(find_total(out, s.child, &t));
	assert_int_equal(t.buffers, 2);
	assert_int_equal(t.fds, 1);
	assert_int_equal(t.maps, 2);
	assert_int_equal(t.views, 0);
	assert_int_equal(t.size, 8 * PAGE);
	assert_int_equal(t.mapped, 8 * PAGE);
	assert_int_equal(t.rss, 8 * PAGE);
	assert_int_equal(t.pss, 5 * PAGE / 2 + 3 * PAGE);
	free(out);

	/* --no-query: /proc only, the exporter is not asked */
	out = run_tool("--no-query", &status);
	assert_int_equal(status, 0);
	assert_true(find_buf(out, s.rw_ino, &b));
	assert_string_equal(b.detail, "  exporter not asked (--no-query)");
	free(out);

	scene_teardown(&s);

	/* released: gone from the listing */
	out = run_tool("--no-query", &status);
	assert_int_equal(status, 0);
	assert_false(find_buf(out, s.rw_ino, &b));
	assert_false(find_buf(out, s.ro_ino, &b));
	free(out);
}

/* --json: parsed by Python's json module, which checks what it holds. */
static void json_holds_the_same(void **state)
{
	static const char check[] =
		"import json, sys\n"
		"d = json.load(sys.stdin)\n"
		"rw, ro, child, fd, me = (int(a) for a in sys.argv[1:6])\n"
		"b = {x['inode']: x for x in d['buffers']}\n"
		"assert d['version'] == sys.argv[6], d['version']\n"
		"assert d['total']['buffers'] == 3 and len(b) == 3, d['total']\n"
		"assert d['total']['size'] == 10 * 4096\n"
		"r = b[rw]\n"
		"assert r['name'] == 'frame-7' and r['query'] == 'ok', r\n"
		"assert r['exporter'] == 'tool-rw' and r['exporter_pid'] == me\n"
		"assert r['size'] == 5 * 4096 and r['access'] == 'rw'\n"
		"assert r['attachments'] == 1 and r['device_mappings'] == 1\n"
		"h = {x['pid']: x for x in r['holders']}\n"
		"assert h[child]['fds'] == [{'fd': fd, 'access': 'rw', 'role': 'file'}], h\n"
		"assert h[child]['maps'] == 1 and h[child]['mapped'] == 5 * 4096\n"
		"assert h[child]['comm'] == '" HOLDER_COMM "'\n"
		"roles = sorted(f['role'] for f in h[me]['fds'])\n"
		"assert 'probe' in roles and 'file' in roles, roles\n"
		"assert h[me]['exporter'] and h[me]['views'] == 0 and h[me]['maps'] == 1\n"
		"assert b[ro]['access'] == 'ro' and h[me]['views_size'] == 0\n"
		"assert b[ro]['name'] is None, b[ro]\n"
		"p = {x['pid']: x for x in d['processes']}\n"
		"assert p[child]['buffers'] == 2 and p[me]['buffers'] == 3, p\n"
		"print('json ok')\n";
	char cmd[PATH_MAX + 4096];
	struct scene s;
	int status;
	char *out;

	scene_setup(&s, true);
	/* the script travels in the environment, so no quoting can break it */
	assert_int_equal(setenv("DMABUF_LS_JSON_CHECK", check, 1), 0);
	snprintf(cmd, sizeof(cmd), "'%s' " SERVED "--json --pid %d | python3 -c \"$DMABUF_LS_JSON_CHECK\" "
		 "%ju %ju %d %d %d %s 2>&1", tool, (int)getpid(), (uintmax_t)s.rw_ino,
		 (uintmax_t)s.ro_ino, (int)s.child, s.child_rw_fd, (int)getpid(), PROJECT_VERSION);
	out = run_cmd(cmd, &status);
	unsetenv("DMABUF_LS_JSON_CHECK");
	if (status != 0 || !strstr(out, "json ok"))
		fail_msg("json check failed (%d): %s", status, out);
	free(out);
	scene_teardown(&s);
}

static void dot_is_a_digraph_of_processes_and_buffers(void **state)
{
	char edge[160], node[160];
	const char *cell;
	struct scene s;
	unsigned int g;
	int status;
	char *out;

	scene_setup(&s, true);
	snprintf(edge, sizeof(edge), SERVED "--dot --pid %d", (int)getpid());
	out = run_tool(edge, &status);
	assert_int_equal(status, 0);
	assert_memory_equal(out, "digraph dmabuf {\n", 17);
	assert_string_equal(out + strlen(out) - 2, "}\n");
	/* one cluster per exporter name; rw's group node holds its cell */
	snprintf(node, sizeof(node), "label=\"tool-rw (exporter pid %d)\";", (int)getpid());
	assert_non_null(strstr(out, node));
	assert_non_null(strstr(out, "label=\"tool-ro (exporter pid "));
	assert_non_null(strstr(out, "label=\"tool-own (exporter pid "));
	snprintf(node, sizeof(node), "<TD>ino %ju<BR/>20 KiB rw<BR/>frame-7<BR/>1 att, 1 map</TD>",
		 (uintmax_t)s.rw_ino);
	cell = strstr(out, node);
	assert_non_null(cell);
	while (cell > out && cell[-1] != '\n')
		cell--;
	assert_int_equal(sscanf(cell, " \"g%u\" [shape=plain", &g), 1);
	/* the exporter's edge and the child's edge */
	snprintf(edge, sizeof(edge), "\"p%d\" -> \"g%u\" [label=\"exports\\nfds ", (int)getpid(), g);
	assert_non_null(strstr(out, edge));
	snprintf(edge, sizeof(edge), "\"p%d\" -> \"g%u\" [label=\"fds %d\\n1 map, 20 KiB\"",
		 (int)s.child, g, s.child_rw_fd);
	assert_non_null(strstr(out, edge));
	snprintf(node, sizeof(node), "\"p%d\" [shape=box", (int)s.child);
	assert_non_null(strstr(out, node));
	/* one statement per line: no raw newline inside a quoted string */
	for (const char *l = strchr(out, '\n') + 1; *l; l = strchr(l, '\n') + 1)
		assert_true(l[0] == '}' || (l[0] == ' ' && l[1] == ' '));
	free(out);
	scene_teardown(&s);
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * 100 buffers of two exporters, 30 of them also held by the child:
 * Graphviz renders the --dot output into a PNG that is neither a strip
 * nor huge, because each exporter is one cluster and the buffers the same
 * processes hold are one table.
 */
static void dot_renders_100_buffers_readably(void **state)
{
	const char *dot = getenv("DOT"), *dir = getenv("TEST_BUILDDIR");
	struct test_exporter tx = { 0 };
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf *bufs[100];
	char cmd[3 * PATH_MAX], dotf[PATH_MAX], pngf[PATH_MAX];
	unsigned char png[24];
	uint32_t w, h;
	int sock, status, clusters = 0;
	pid_t child;
	char *out;
	FILE *f;

	if (!dot || !*dot)
		fail_msg("Graphviz's dot was not found at configure time: tools/install-deps.sh "
			 "installs graphviz");
	assert_non_null(dir);
	start_holder(&sock, &child);
	for (int i = 0; i < 100; i++) {
		bufs[i] = export_named(ctx, &tx, i < 60 ? "camera" : "gpu", PAGE, O_RDWR);
		if (i < 30)
			give(sock, bufs[i], HOLD_KEEP);
	}

	/* Files of this process's own: meson runs copies of the suite side
	 * by side (--repeat), and one read the other's graph (its own
	 * child's edge missing) or a PNG being written. */
	snprintf(dotf, sizeof(dotf), "%s/tool-100-%d.dot", dir, (int)getpid());
	snprintf(pngf, sizeof(pngf), "%s/tool-100-%d.png", dir, (int)getpid());
	snprintf(cmd, sizeof(cmd), "'%s' --dot --no-query --pid %d > '%s'", tool, (int)getpid(), dotf);
	out = run_cmd(cmd, &status);
	assert_int_equal(status, 0);
	free(out);
	snprintf(cmd, sizeof(cmd), "cat '%s'", dotf);
	out = run_cmd(cmd, &status);
	for (const char *p = out; (p = strstr(p, "subgraph \"cluster_")); p++)
		clusters++;
	assert_int_equal(clusters, 2);
	/* camera: 30 shared with the child, 30 its own; gpu: 40 */
	assert_non_null(strstr(out, "<B>30 buffers, 120 KiB</B>"));
	assert_non_null(strstr(strstr(out, "<B>30 buffers, 120 KiB</B>") + 1,
			       "<B>30 buffers, 120 KiB</B>"));
	assert_non_null(strstr(out, "<B>40 buffers, 160 KiB</B>"));
	assert_null(strstr(out, "\"g4\""));
	snprintf(cmd, sizeof(cmd), "\"p%d\" -> \"g", (int)child);
	assert_non_null(strstr(out, cmd));
	free(out);

	snprintf(cmd, sizeof(cmd), "'%s' -Tpng '%s' -o '%s' 2>&1", dot, dotf, pngf);
	out = run_cmd(cmd, &status);
	if (status != 0)
		fail_msg("dot -Tpng failed (%d): %s", status, out);
	free(out);
	f = fopen(pngf, "rbe");
	assert_non_null(f);
	assert_int_equal(fread(png, 1, sizeof(png), f), sizeof(png));
	fclose(f);
	unlink(dotf);
	unlink(pngf);
	assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
	assert_memory_equal(png + 12, "IHDR", 4);
	w = be32(png + 16);
	h = be32(png + 20);
	print_message("tool-100.png: %u x %u pixels\n", w, h);
	/* readable: fits a screen or two, and no strip */
	assert_true(w >= 200 && h >= 200);
	assert_true(w <= 2500 && h <= 2500);
	assert_true(w <= 3 * h && h <= 3 * w);

	stop_holder(sock, child);
	for (int i = 0; i < 100; i++)
		assert_int_equal(dmabuf_put(bufs[i]), 0);
	dmabuf_ctx_destroy(ctx);
}

static void filters_pick_buffers(void **state)
{
	struct scene s;
	struct buf_row b;
	char args[128];
	int status;
	char *out;

	scene_setup(&s, true);
	snprintf(args, sizeof(args), "--no-query --pid %d", (int)s.child);
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_true(find_buf(out, s.rw_ino, &b));
	assert_true(find_buf(out, s.ro_ino, &b));
	assert_false(find_buf(out, s.own_ino, &b));
	assert_non_null(strstr(out, "\n2 buffers, 32768 bytes\n"));
	free(out);

	snprintf(args, sizeof(args), "--no-query --pid=%d --dot", (int)getpid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_memory_equal(out, "digraph", 7);
	assert_non_null(strstr(out, "tool-own"));
	assert_non_null(strstr(out, "tool-ro"));
	free(out);

	/* exporter name, a glob */
	snprintf(args, sizeof(args), "--no-query -p %d --exporter 'tool-r?'", (int)getpid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_true(find_buf(out, s.rw_ino, &b));
	assert_true(find_buf(out, s.ro_ino, &b));
	assert_false(find_buf(out, s.own_ino, &b));
	free(out);

	/* the buffer's name, from the exporter */
	snprintf(args, sizeof(args), SERVED "-p %d --name 'frame-*'", (int)getpid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_true(find_buf(out, s.rw_ino, &b));
	assert_false(find_buf(out, s.ro_ino, &b));
	assert_false(find_buf(out, s.own_ino, &b));
	assert_non_null(strstr(out, "\n1 buffer, 20480 bytes\n"));
	free(out);
	out = run_tool_err("--no-query --name x", true, &status);
	assert_int_equal(status, 1);
	assert_non_null(strstr(out, "--name needs the exporters' answer"));
	free(out);

	/* a command: buffers a process of that name holds */
	out = run_tool("--no-query --comm '" HOLDER_COMM "'", &status);
	assert_int_equal(status, 0);
	assert_true(find_buf(out, s.rw_ino, &b));
	assert_true(find_buf(out, s.ro_ino, &b));
	assert_false(find_buf(out, s.own_ino, &b));
	free(out);
	out = run_tool("--no-query --comm 'no-such-command-*'", &status);
	assert_int_equal(status, 0);
	assert_false(find_buf(out, s.rw_ino, &b));
	free(out);

	/* a process that holds nothing */
	snprintf(args, sizeof(args), "--no-query -p %d", (int)getppid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_false(find_buf(out, s.rw_ino, &b));
	free(out);
	scene_teardown(&s);
}

/* An exporter that does not serve: the tool waits --timeout once for it,
 * says so for each of its buffers, and lists them anyway. */
static void silent_exporter_is_reported(void **state)
{
	struct scene s;
	struct buf_row b;
	char args[64];
	int status;
	char *out;

	scene_setup(&s, false);
	snprintf(args, sizeof(args), "--timeout 200 --pid %d", (int)getpid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_true(find_buf(out, s.rw_ino, &b));
	assert_string_equal(b.detail, "  exporter did not describe it: Connection timed out");
	assert_true(find_buf(out, s.own_ino, &b));
	assert_string_equal(b.detail, "  exporter did not describe it: Connection timed out");
	assert_non_null(strstr(out, "\n3 buffers, 40960 bytes\n"));
	free(out);
	/* the half-open connection is handled when the exporter serves */
	assert_true(dmabuf_ctx_dispatch_timeout(s.ctx, 0) >= 0);
	scene_teardown(&s);
}

/* memfds that look like libdmabuf's, made by hand: the tool lists what it
 * can and never trips on a name. */
static void odd_names_do_not_confuse_it(void **state)
{
	static const char *const names[] = {
		"dmabuf:",
		"dmabuf:no-endpoint",
		"dmabuf:x@",
		"dmabuf:x@dmabuf-",
		"dmabuf:x@dmabuf-99999999999999999999-0011223344556677",
		"dmabuf:x@dmabuf-12-00112233445566778899",
		"dmabuf:%s%n@dmabuf-1-zz",
		"dmabuf:\"q\\\t\x01\xff@@dmabuf-1-0011223344556677",
	};
	const size_t n = sizeof(names) / sizeof(names[0]);
	int fds[sizeof(names) / sizeof(names[0])];
	struct test_exporter tx = { 0 };
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_export_info info = {
		.exp_name = "odd \"name\"\n@x<&>", .ops = &tx_ops, .size = PAGE,
		.flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf *buf;
	struct buf_row b;
	struct stat st;
	char pid[32], args[64];
	int status;
	char *out;

	for (size_t i = 0; i < n; i++) {
		fds[i] = memfd_create(names[i], MFD_CLOEXEC);
		assert_true(fds[i] >= 0);
		assert_int_equal(ftruncate(fds[i], PAGE), 0);
	}
	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	assert_int_equal(dmabuf_ctx_start_thread(ctx), 0);

	snprintf(args, sizeof(args), "--timeout 500 --pid %d", (int)getpid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(fstat(fds[i], &st), 0);
		assert_true(find_buf(out, st.st_ino, &b));
		assert_string_equal(b.size, "4096");
		/* the endpoint's pid is not trusted unless it parses */
		if (i != n - 1)
			assert_string_equal(b.exp_pid, "?");
	}
	/* the last one's exporter is everything up to the last '@' */
	assert_int_equal(fstat(fds[n - 1], &st), 0);
	assert_true(find_buf(out, st.st_ino, &b));
	assert_string_equal(b.exp_pid, "1");
	assert_string_equal(b.exp_name, "\"q\\\\x09\\x01\\xff@");
	/* the exported one: the newline is escaped, the pid is ours */
	{
		int fd = dmabuf_fd(buf, O_CLOEXEC);

		assert_int_equal(fstat(fd, &st), 0);
		close(fd);
	}
	assert_true(find_buf(out, st.st_ino, &b));
	assert_string_equal(b.exp_name, "odd \"name\"\\x0a@x<&>");
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	assert_string_equal(b.exp_pid, pid);
	free(out);

	snprintf(args, sizeof(args), "--dot --no-query --pid %d", (int)getpid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "label=\"odd \\\"name\\\"\\\\x0a@x<&> (exporter pid "));
	for (const char *l = strchr(out, '\n') + 1; *l; l = strchr(l, '\n') + 1)
		assert_true(l[0] == '}' || (l[0] == ' ' && l[1] == ' '));
	free(out);
	snprintf(args, sizeof(args), "--json --no-query --pid %d", (int)getpid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "\"exporter\": \"odd \\\"name\\\"\\u000a@x<&>\""));
	assert_non_null(strstr(out, "\"exporter\": \"\\\"q\\\\\\u0009\\u0001\\u00ff@\""));
	free(out);

	assert_int_equal(dmabuf_ctx_stop_thread(ctx), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/* The parent of pid, from /proc/pid/stat; 0 if it cannot be read. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512];
	const char *p;
	int ppid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		sscanf(p + 1, " %*c %d", &ppid);
	fclose(f);
	return (pid_t)ppid;
}

/*
 * The README's scene: dmabuf-ls against the demo running slowly (--fps).
 * It finds a frame the camera exports and the encoder or the display holds,
 * with the camera a child of the demo we started (other demos may run on
 * the machine). Bounded by a number of tries, not by time.
 */
static void sees_the_running_demo(void **state)
{
	char demo[sizeof(tool) + 32], *slash;
	bool seen = false, exited = false;
	pid_t pid;
	int status;

	snprintf(demo, sizeof(demo), "%s", tool);
	slash = strstr(demo, "/tools/dmabuf-ls");
	assert_non_null(slash);
	strcpy(slash, "/examples/dmabuf-demo");
	assert_int_equal(access(demo, X_OK), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
			_exit(126);
		execl(demo, demo, "--frames", "24", "--fps", "4", (char *)NULL);
		_exit(127);
	}
	/*
	 * Look while the demo runs: once it has exited there is nothing to see,
	 * and trying on would turn a miss into a suite timeout. 24 frames at
	 * 4 fps leave several looks even when one dmabuf-ls run under ASan on a
	 * loaded machine takes a second.
	 */
	for (int tries = 0; tries < 400 && !seen && !exited; tries++) {
		char *out = run_tool("--no-query --comm camera --exporter deferred", &status);

		assert_int_equal(status, 0);
		for (const char *l = out; l && *l && !seen; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
			struct buf_row b;
			struct holder_row h;
			unsigned long long ino;
			int exp;

			if (*l < '0' || *l > '9' ||
			    sscanf(l, "%llu %*s %*s %d", &ino, &exp) != 2 || parent_of(exp) != pid)
				continue;
			if (!find_buf(l, (ino_t)ino, &b) || !find_holder(&b, exp, &h))
				continue;
			if (strcmp(h.comm, "camera") != 0 || !h.exporter || h.maps != 1)
				continue;
			/* a consumer holds it too */
			for (const char *c = strchr(l, '\n'); c && c[1] == ' ' && !seen;
			     c = strchr(c + 1, '\n')) {
				char comm[64] = "";

				if (sscanf(c + 1, " %*d %63s", comm) == 1)
					seen = !strcmp(comm, "encoder") || !strcmp(comm, "display");
			}
		}
		free(out);
		if (seen)
			break;
		if (waitpid(pid, &status, WNOHANG) == pid)
			exited = true;
		else
			poll(NULL, 0, 25);
	}
	if (!exited)
		assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(seen);
}

static void arguments(void **state)
{
	static const char *const bad[] = {
		"--bogus", "--pid", "--pid abc", "--pid 0", "--pid -5", "--pid 12x",
		"--pid 99999999999", "extra", "--dot extra", "--dot --json", "--timeout 0",
		"--timeout x", "--exporter",
	};
	int status;
	char *out;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		out = run_tool(bad[i], &status);
		if (status != 1)
			fail_msg("dmabuf-ls %s: exit %d, want 1", bad[i], status);
		free(out);
	}
	out = run_tool("--help", &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "Usage: dmabuf-ls"));
	assert_non_null(strstr(out, "--json"));
	/* the manual documents every long option of --help */
	{
		char *man = run_cmd("cat '" TEST_SRCDIR "/../docs/man/dmabuf-ls.1.scd'", &status);
		char opt[40];
		int n = 0;

		assert_int_equal(status, 0);
		for (const char *p = out; (p = strstr(p, "--")); p += 2) {
			if (sscanf(p, "--%30[a-z-]", opt + 3) != 1)
				continue;
			memcpy(opt, "*--", 3);
			strcat(opt, "*");
			if (!strstr(man, opt))
				fail_msg("docs/man/dmabuf-ls.1.scd does not document %s", opt);
			n++;
		}
		assert_true(n >= 10);
		free(man);
	}
	free(out);
	out = run_tool("-h", &status);
	assert_int_equal(status, 0);
	free(out);
	out = run_tool("--version", &status);
	assert_int_equal(status, 0);
	assert_string_equal(out, "dmabuf-ls (libdmabuf) " PROJECT_VERSION ", library "
				 PROJECT_VERSION "\n");
	free(out);
	/* a pid that does not exist: an error, not an empty list */
	out = run_tool_err("--pid 2147483647", true, &status);
	assert_int_equal(status, 1);
	assert_string_equal(out, "dmabuf-ls: no process with pid 2147483647\n");
	free(out);
}

/* An O_PATH fd of a buffer's inode holds nothing (no open file: the
 * kernel's fget() refuses it): it is not listed as a holder's fd. */
static void o_path_fd_is_not_a_holder(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int fd = dmabuf_heap_alloc(ctx, "system", PAGE, O_RDWR | O_CLOEXEC, 0);
	struct holder_row before, after;
	char args[64], path[64];
	struct buf_row b;
	struct stat st;
	int status, opath;
	char *out;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	snprintf(args, sizeof(args), "--no-query --pid %d", (int)getpid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_true(find_buf(out, st.st_ino, &b));
	assert_true(find_holder(&b, getpid(), &before));
	free(out);

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	opath = open(path, O_PATH | O_CLOEXEC);
	assert_true(opath >= 0);
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_true(find_buf(out, st.st_ino, &b));
	assert_true(find_holder(&b, getpid(), &after));
	assert_string_equal(after.fds, before.fds);
	free(out);
	close(opath);
	close(fd);
	dmabuf_ctx_destroy(ctx);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		harness_test(table_names_exporter_size_and_holders),
		harness_test(json_holds_the_same),
		harness_test(dot_is_a_digraph_of_processes_and_buffers),
		harness_test(dot_renders_100_buffers_readably),
		harness_test(filters_pick_buffers),
		harness_test(silent_exporter_is_reported),
		harness_test(odd_names_do_not_confuse_it),
		harness_test(sees_the_running_demo),
		harness_test(arguments),
		harness_test(o_path_fd_is_not_a_holder),
	};

	find_tool(argc > 0 ? argv[0] : "test-tool");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
