/* SPDX-License-Identifier: MIT */
/*
 * The uapi layer's costs, each a ratio measured in the same run:
 * - pass-through: ioctl(FIONREAD) on a pipe, and open+close of a regular
 *   file, with libdmabuf-preload.so against without it (target <= 1.05x),
 *   both in a process that never touched an emulated path and in one that
 *   did ("active": its close() classifies fds);
 * - an emulated DMA_HEAP_IOCTL_ALLOC + close against memfd_create +
 *   ftruncate + close;
 * - DMA_BUF_IOCTL_SYNC START + END against two bare ioctl syscalls.
 *
 * The program re-executes itself with and without the preload, several
 * times alternately, and takes the best round of each (the least disturbed
 * by the rest of the machine). usage: bench-uapi PRELOAD.so
 */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

#include "bench-common.h"

#define ROUNDS 9
#define N_PASS 200000
#define N_OPEN 50000
#define N_ALLOC 2000
#define N_SYNC 20000

enum { PIPE_IOCTL, OPEN_CLOSE, PIPE_IOCTL_ACTIVE, OPEN_CLOSE_ACTIVE, HEAP_ALLOC, MEMFD,
       SYNC_PAIR, BARE_PAIR, NFIG };

static const char *const names[NFIG] = {
	"pipe_ioctl", "open_close", "pipe_ioctl_active", "open_close_active",
	"heap_alloc_close", "memfd_ftruncate_close", "sync_start_end", "two_bare_ioctls",
};

/* ns per operation of each figure, written to the parent on stdout. */
static void measure(bool preloaded)
{
	double ns[NFIG] = { 0 };
	char path[] = "/tmp/bench-uapi-XXXXXX";
	int p[2], n, i, fd, heap = -1, buf = -1;
	uint64_t t0;

	if (pipe(p) < 0 || (fd = mkstemp(path)) < 0)
		BENCH_FAIL("pipe/mkstemp: %s", strerror(errno));
	close(fd);
	for (int pass = 0; pass < 2; pass++) {
		int base = pass ? PIPE_IOCTL_ACTIVE : PIPE_IOCTL;

		if (pass == 1 && preloaded) {
			/* Becomes active: the process has an emulated fd. */
			heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
			if (heap < 0)
				BENCH_FAIL("open heap: %s", strerror(errno));
		}
		t0 = bench_now_ns();
		for (i = 0; i < N_PASS; i++)
			if (ioctl(p[0], FIONREAD, &n) < 0)
				BENCH_FAIL("FIONREAD: %s", strerror(errno));
		ns[base] = (double)(bench_now_ns() - t0) / N_PASS;
		t0 = bench_now_ns();
		for (i = 0; i < N_OPEN; i++) {
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				BENCH_FAIL("open: %s", strerror(errno));
			close(fd);
		}
		ns[base + 1] = (double)(bench_now_ns() - t0) / N_OPEN;
	}
	unlink(path);
	t0 = bench_now_ns();
	for (i = 0; i < N_ALLOC; i++) {
		fd = memfd_create("bench", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, 1 << 16) < 0)
			BENCH_FAIL("memfd: %s", strerror(errno));
		close(fd);
	}
	ns[MEMFD] = (double)(bench_now_ns() - t0) / N_ALLOC;
	t0 = bench_now_ns();
	for (i = 0; i < N_SYNC; i++)
		if (ioctl(p[0], FIONREAD, &n) < 0 || ioctl(p[0], FIONREAD, &n) < 0)
			BENCH_FAIL("FIONREAD");
	ns[BARE_PAIR] = (double)(bench_now_ns() - t0) / N_SYNC;
	if (preloaded) {
		struct dma_heap_allocation_data d;
		struct dma_buf_sync s;

		t0 = bench_now_ns();
		for (i = 0; i < N_ALLOC; i++) {
			d = (struct dma_heap_allocation_data){ .len = 1 << 16,
							       .fd_flags = O_RDWR | O_CLOEXEC };
			if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) < 0)
				BENCH_FAIL("ALLOC: %s", strerror(errno));
			close((int)d.fd);
		}
		ns[HEAP_ALLOC] = (double)(bench_now_ns() - t0) / N_ALLOC;
		d = (struct dma_heap_allocation_data){ .len = 1 << 16, .fd_flags = O_RDWR | O_CLOEXEC };
		if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) < 0)
			BENCH_FAIL("ALLOC: %s", strerror(errno));
		buf = (int)d.fd;
		t0 = bench_now_ns();
		for (i = 0; i < N_SYNC; i++) {
			s.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW;
			if (ioctl(buf, DMA_BUF_IOCTL_SYNC, &s) < 0)
				BENCH_FAIL("SYNC: %s", strerror(errno));
			s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
			if (ioctl(buf, DMA_BUF_IOCTL_SYNC, &s) < 0)
				BENCH_FAIL("SYNC: %s", strerror(errno));
		}
		ns[SYNC_PAIR] = (double)(bench_now_ns() - t0) / N_SYNC;
		close(buf);
		close(heap);
	}
	for (i = 0; i < NFIG; i++)
		printf("%.3f\n", ns[i]);
}

/* Runs this program in measure mode, with or without the preload. */
static void run_child(const char *self, const char *preload, double *ns)
{
	int p[2], status, i;
	char out[1024];
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	if (pipe(p) < 0)
		BENCH_FAIL("pipe");
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		if (preload)
			setenv("LD_PRELOAD", preload, 1);
		else
			unsetenv("LD_PRELOAD");
		execl(self, self, "--measure", preload ? "1" : "0", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	while (n < sizeof(out) - 1 && (r = read(p[0], out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(p[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		BENCH_FAIL("measuring child failed (%s)", preload ? "preload" : "plain");
	char *s = out;
	for (i = 0; i < NFIG; i++)
		ns[i] = strtod(s, &s);
}

int main(int argc, char **argv)
{
	double plain[ROUNDS][NFIG], pre[ROUNDS][NFIG], med_plain[NFIG], med_pre[NFIG], v[ROUNDS];
	int r, i;

	if (argc == 3 && !strcmp(argv[1], "--measure")) {
		measure(argv[2][0] == '1');
		return 0;
	}
	if (argc != 2)
		BENCH_FAIL("usage: bench-uapi PRELOAD.so");
	for (r = 0; r < ROUNDS; r++) {
		run_child("/proc/self/exe", NULL, plain[r]);
		run_child("/proc/self/exe", argv[1], pre[r]);
	}
	for (i = 0; i < NFIG; i++) {
		for (r = 0; r < ROUNDS; r++)
			v[r] = plain[r][i];
		bench_median(v, ROUNDS); /* sorts */
		med_plain[i] = v[0];
		for (r = 0; r < ROUNDS; r++)
			v[r] = pre[r][i];
		bench_median(v, ROUNDS);
		med_pre[i] = v[0];
	}
	printf("%-28s %12s %12s %8s\n", "figure (best of 9 rounds)", "plain ns", "preload ns", "ratio");
	for (i = 0; i < 4; i++) {
		/* Without the preload, "active" is the same process state. */
		double base = med_plain[i % 2 ? OPEN_CLOSE : PIPE_IOCTL];

		printf("%-28s %12.1f %12.1f %7.3fx\n", names[i], base, med_pre[i], med_pre[i] / base);
		bench_line("uapi", names[i], med_pre[i] / base, "ratio");
	}
	printf("%-28s %12.1f %12.1f %7.2fx\n", "heap alloc+close vs memfd", med_plain[MEMFD],
	       med_pre[HEAP_ALLOC], med_pre[HEAP_ALLOC] / med_plain[MEMFD]);
	bench_line("uapi", "heap_alloc_close_vs_memfd", med_pre[HEAP_ALLOC] / med_plain[MEMFD],
		   "ratio");
	printf("%-28s %12.1f %12.1f %7.2fx\n", "SYNC START+END vs 2 ioctls", med_plain[BARE_PAIR],
	       med_pre[SYNC_PAIR], med_pre[SYNC_PAIR] / med_plain[BARE_PAIR]);
	bench_line("uapi", "sync_pair_vs_bare", med_pre[SYNC_PAIR] / med_plain[BARE_PAIR], "ratio");
	return 0;
}
