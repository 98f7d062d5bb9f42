/* SPDX-License-Identifier: MIT */
/*
 * dmabuf-ls, run as a program against buffers this process exports and a
 * child process holds: the text table, --dot, --pid, odd names and bad
 * arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "exporter.h"

#define PAGE 4096u

static char tool[PATH_MAX + 32];

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

/* Runs the tool with args; returns its output (free it) and exit status. */
static char *run_tool(const char *args, int *status)
{
	char cmd[PATH_MAX + 256];
	size_t len = 0, cap = 65536;
	char *out = malloc(cap);
	FILE *f;
	size_t n;
	int st;

	assert_non_null(out);
	assert_int_equal(access(tool, X_OK), 0);
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>/dev/null", tool, args);
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

/* The buffer's line in the table: "<ino> <size> <access> <exp-pid> <exporter>". */
struct buf_row {
	char size[32], access[8], exp_pid[32], exp_name[128];
	const char *line;
};

/* One holder line: "  <pid> <comm> <maps> <mapped>  <fds>  [exporter]". */
struct holder_row {
	int pid;
	char comm[64];
	unsigned long maps;
	unsigned long long mapped;
	char fds[128];
	int exporter;
};

static int find_buf(const char *out, ino_t ino, struct buf_row *row)
{
	for (const char *l = out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		unsigned long long v;

		if (*l < '0' || *l > '9' || sscanf(l, "%llu", &v) != 1 || v != (unsigned long long)ino)
			continue;
		memset(row, 0, sizeof(*row));
		row->line = l;
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
		n = sscanf(l, " %d %63s %lu %llu %127s", &row->pid, row->comm, &row->maps,
			   &row->mapped, row->fds);
		if (n != 5 || row->pid != pid)
			continue;
		row->exporter = (int)(strstr(l, "[exporter]") &&
				      (!eol || strstr(l, "[exporter]") < eol));
		return 1;
	}
	return 0;
}

/* A holder process: receives fds and maps them, as an importer would. */
enum { HOLD_MAP = 'm', HOLD_MAP_CLOSE = 'M', HOLD_QUIT = 'q' };

static int holder_main(void *arg)
{
	int sock = *(int *)arg;
	struct { void *p; size_t len; int fd; } held[8];
	int n = 0;

	for (;;) {
		unsigned char msg[16];
		size_t len = 0;
		uint64_t size;
		int fd = -1;
		void *p;

		child_check(dmabuf_recv_fd(sock, &fd, msg, sizeof(msg), &len) == 0);
		if (msg[0] == HOLD_QUIT)
			break;
		child_check(len == 1 + sizeof(size) && fd >= 0 && n < 8);
		memcpy(&size, msg + 1, sizeof(size));
		p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		child_check(p != MAP_FAILED);
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
	struct dmabuf_ctx *ctx;
	struct test_exporter tx;
	struct dmabuf *rw, *ro, *own;
	ino_t rw_ino, ro_ino, own_ino;
	int child_rw_fd;	/* the child's fd number for rw */
};

static struct dmabuf *export_named(struct scene *s, const char *name, uint64_t size, int flags)
{
	struct dmabuf_export_info info = {
		.exp_name = name, .ops = &tx_ops, .size = size, .flags = flags,
		.priv = &s->tx, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_export(s->ctx, &info, &buf), 0);
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
static int give(struct scene *s, struct dmabuf *buf, char how)
{
	unsigned char msg[1 + sizeof(uint64_t)];
	uint64_t size = dmabuf_get_size(buf);
	int fd = dmabuf_fd(buf, O_CLOEXEC), rfd = -1, child_fd = -2;
	size_t len = 0;

	assert_true(fd >= 0);
	msg[0] = (unsigned char)how;
	memcpy(msg + 1, &size, sizeof(size));
	assert_int_equal(dmabuf_send_fd(s->sock, fd, msg, sizeof(msg)), 0);
	close(fd);
	assert_int_equal(dmabuf_recv_fd(s->sock, &rfd, &child_fd, sizeof(child_fd), &len), 0);
	assert_int_equal(rfd, -1);
	assert_int_equal(len, sizeof(child_fd));
	return child_fd;
}

/*
 * The child is forked before anything is exported, so it holds only what it
 * is given: rw (an fd and a mapping) and ro (a mapping, its fd closed).
 * own stays with the exporter.
 */
static void scene_setup(struct scene *s)
{
	int sv[2];

	memset(s, 0, sizeof(*s));
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	s->child = harness_fork(holder_main, &sv[1]);
	close(sv[1]);
	s->sock = sv[0];

	s->ctx = tx_ctx_new(0);
	s->rw = export_named(s, "tool-rw", 5 * PAGE, O_RDWR);
	s->ro = export_named(s, "tool-ro", 3 * PAGE, O_RDONLY);
	s->own = export_named(s, "tool-own", 2 * PAGE, O_RDWR);
	s->rw_ino = ino_of(s->rw);
	s->ro_ino = ino_of(s->ro);
	s->own_ino = ino_of(s->own);
	s->child_rw_fd = give(s, s->rw, HOLD_MAP);
	assert_true(s->child_rw_fd >= 0);
	assert_int_equal(give(s, s->ro, HOLD_MAP_CLOSE), -1);
}

static void scene_teardown(struct scene *s)
{
	unsigned char q = HOLD_QUIT;

	assert_int_equal(dmabuf_send_fd(s->sock, -1, &q, 1), 0);
	assert_int_equal(harness_wait(s->child), 0);
	close(s->sock);
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
	char num[32];
	int status;
	char *out;

	scene_setup(&s);
	out = run_tool("", &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "INODE"));
	snprintf(num, sizeof(num), "%d", (int)getpid());

	/* rw: exporter, size, access; the exporter holds the dma-buf file and
	 * the probe OFD and a mapping; the child an fd and one mapping */
	assert_true(find_buf(out, s.rw_ino, &b));
	assert_string_equal(b.exp_name, "tool-rw");
	assert_string_equal(b.size, "20480");
	assert_string_equal(b.access, "rw");
	assert_string_equal(b.exp_pid, num);
	assert_true(find_holder(&b, getpid(), &h));
	assert_true(h.exporter);
	assert_non_null(strstr(h.fds, "(probe)"));
	assert_true(h.maps >= 1);
	assert_true(find_holder(&b, s.child, &h));
	assert_false(h.exporter);
	assert_int_equal(h.maps, 1);
	assert_int_equal(h.mapped, 5 * PAGE);
	snprintf(num, sizeof(num), "%d", s.child_rw_fd);
	assert_string_equal(h.fds, num);

	/* ro: read-only; the child holds only a mapping */
	assert_true(find_buf(out, s.ro_ino, &b));
	assert_string_equal(b.exp_name, "tool-ro");
	assert_string_equal(b.size, "12288");
	assert_string_equal(b.access, "ro");
	assert_true(find_holder(&b, s.child, &h));
	assert_int_equal(h.maps, 1);
	assert_int_equal(h.mapped, 3 * PAGE);
	assert_string_equal(h.fds, "-");

	/* own: the child is not a holder */
	assert_true(find_buf(out, s.own_ino, &b));
	assert_string_equal(b.size, "8192");
	assert_true(find_holder(&b, getpid(), &h));
	assert_false(find_holder(&b, s.child, &h));
	free(out);

	scene_teardown(&s);

	/* released: gone from the listing */
	out = run_tool("", &status);
	assert_int_equal(status, 0);
	assert_false(find_buf(out, s.rw_ino, &b));
	assert_false(find_buf(out, s.ro_ino, &b));
	free(out);
}

static void dot_is_a_digraph_of_processes_and_buffers(void **state)
{
	char edge[128], node[128];
	struct scene s;
	struct stat st;
	int status, fd;
	char *out;

	scene_setup(&s);
	fd = dmabuf_fd(s.rw, O_CLOEXEC);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);

	out = run_tool("--dot", &status);
	assert_int_equal(status, 0);
	assert_memory_equal(out, "digraph dmabuf {\n", 17);
	assert_string_equal(out + strlen(out) - 2, "}\n");
	/* the buffer node, the exporter's edge and the child's edge */
	snprintf(node, sizeof(node), "\"b%ju_%ju\" [shape=ellipse, label=\"tool-rw\\nino %ju\\n20480 bytes rw\"",
		 (uintmax_t)st.st_dev, (uintmax_t)st.st_ino, (uintmax_t)st.st_ino);
	assert_non_null(strstr(out, node));
	snprintf(edge, sizeof(edge), "\"p%d\" -> \"b%ju_%ju\" [label=\"exports\\nfds ",
		 (int)getpid(), (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
	assert_non_null(strstr(out, edge));
	snprintf(edge, sizeof(edge), "\"p%d\" -> \"b%ju_%ju\" [label=\"fds %d\\n1 map, 20480 bytes\"",
		 (int)s.child, (uintmax_t)st.st_dev, (uintmax_t)st.st_ino, s.child_rw_fd);
	assert_non_null(strstr(out, edge));
	snprintf(node, sizeof(node), "\"p%d\" [shape=box", (int)s.child);
	assert_non_null(strstr(out, node));
	/* one statement per line: no raw newline inside a quoted string */
	for (const char *l = strchr(out, '\n') + 1; *l; l = strchr(l, '\n') + 1)
		assert_true(l[0] == '}' || (l[0] == ' ' && l[1] == ' '));
	free(out);
	scene_teardown(&s);
}

static void pid_restricts_to_what_a_process_holds(void **state)
{
	struct scene s;
	struct buf_row b;
	char args[64];
	int status;
	char *out;

	scene_setup(&s);
	snprintf(args, sizeof(args), "--pid %d", (int)s.child);
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_true(find_buf(out, s.rw_ino, &b));
	assert_true(find_buf(out, s.ro_ino, &b));
	assert_false(find_buf(out, s.own_ino, &b));
	assert_non_null(strstr(out, "\n2 buffers, 32768 bytes\n"));
	free(out);

	snprintf(args, sizeof(args), "--pid=%d --dot", (int)getpid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_memory_equal(out, "digraph", 7);
	assert_non_null(strstr(out, "tool-own"));
	assert_non_null(strstr(out, "tool-ro"));
	free(out);

	/* a process that holds nothing */
	snprintf(args, sizeof(args), "-p %d", (int)getppid());
	out = run_tool(args, &status);
	assert_int_equal(status, 0);
	assert_false(find_buf(out, s.rw_ino, &b));
	free(out);
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
		.exp_name = "odd \"name\"\n@x", .ops = &tx_ops, .size = PAGE,
		.flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf *buf;
	struct buf_row b;
	struct stat st;
	char pid[32];
	int status;
	char *out;

	for (size_t i = 0; i < n; i++) {
		fds[i] = memfd_create(names[i], MFD_CLOEXEC);
		assert_true(fds[i] >= 0);
		assert_int_equal(ftruncate(fds[i], PAGE), 0);
	}
	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);

	out = run_tool("", &status);
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
	assert_string_equal(b.exp_name, "odd \"name\"\\x0a@x");
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	assert_string_equal(b.exp_pid, pid);
	free(out);

	out = run_tool("--dot", &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "label=\"odd \\\"name\\\"\\\\x0a@x\\nino "));
	for (const char *l = strchr(out, '\n') + 1; *l; l = strchr(l, '\n') + 1)
		assert_true(l[0] == '}' || (l[0] == ' ' && l[1] == ' '));
	free(out);

	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

static void arguments(void **state)
{
	static const char *const bad[] = {
		"--bogus", "--pid", "--pid abc", "--pid 0", "--pid -5", "--pid 12x",
		"--pid 99999999999", "extra", "--dot extra",
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
	free(out);
	out = run_tool("-h", &status);
	assert_int_equal(status, 0);
	free(out);
	/* a pid that does not exist: nothing, exit 0 */
	out = run_tool("--pid 2147483647", &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "\n0 buffers, 0 bytes\n"));
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
	snprintf(args, sizeof(args), "--pid %d", (int)getpid());
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
		harness_test(dot_is_a_digraph_of_processes_and_buffers),
		harness_test(pid_restricts_to_what_a_process_holds),
		harness_test(odd_names_do_not_confuse_it),
		harness_test(arguments),
		harness_test(o_path_fd_is_not_a_holder),
	};

	find_tool(argc > 0 ? argv[0] : "test-tool");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
