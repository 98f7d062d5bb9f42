/* SPDX-License-Identifier: MIT */
/*
 * dmabuf-run [OPTIONS] PROGRAM [ARGS...]: runs PROGRAM, and everything it
 * starts, with the kernel's dma-buf uapi emulated by libdmabuf-preload.so
 * (docs/uapi.md, dmabuf-run(1)). Options become environment variables of
 * the preload, LD_PRELOAD gets the preload appended, and PROGRAM is exec'd,
 * so its exit status is the run's.
 *
 * A statically linked PROGRAM has no dynamic loader to honour LD_PRELOAD.
 * needs_supervisor() tells those apart (no PT_INTERP); they go to
 * dmb_run_supervised() when a seccomp supervisor is linked in, otherwise
 * dmabuf-run says so in one line and runs them without emulation.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DMABUF_PRELOAD_PATH
#define DMABUF_PRELOAD_PATH "libdmabuf-preload.so"
#endif

/*
 * The seccomp supervisor's entry point, if one is linked in: runs argv
 * under user notification and returns the exit status to exit with (never
 * returns on success of exec in its child). Weak: absent, it is NULL.
 */
int dmb_run_supervised(char **argv) __attribute__((weak));

static void usage(FILE *out)
{
	fprintf(out,
		"usage: dmabuf-run [OPTIONS] PROGRAM [ARGS...]\n"
		"Runs PROGRAM (and every process it starts) with /dev/dma_heap, /dev/udmabuf\n"
		"and sw_sync emulated by libdmabuf; the exit status is PROGRAM's.\n"
		"\n"
		"  --leaks[=report|fatal]  at exit, report every dma-buf fd, mapping and sync\n"
		"                          file still held, with where it was made; fatal:\n"
		"                          a leak makes the run exit with status 99\n"
		"  --strict                dma-buf mappings are inaccessible outside a\n"
		"                          DMA_BUF_IOCTL_SYNC START/END bracket\n"
		"  --trace                 one line on stderr per emulated call\n"
		"  --cma-heap=NAME         name of the contiguous heap (default linux,cma)\n"
		"  --root=DIR              directory holding the emulated tree\n"
		"  --preload=PATH          the preload library to use\n"
		"  --seccomp               serve PROGRAM with the seccomp supervisor even if it\n"
		"                          is dynamically linked (raw syscall() callers)\n"
		"  -h, --help              this text\n"
		"\n"
		"Environment set for PROGRAM: LD_PRELOAD (appended), DMABUF_UAPI_LEAKS,\n"
		"DMABUF_UAPI_STRICT, DMABUF_UAPI_TRACE, DMABUF_UAPI_CMA_HEAP, DMABUF_UAPI_ROOT.\n");
}

/* Finds PROGRAM as execvp() would; returns 0 and the path in buf. */
static int find_program(const char *prog, char *buf, size_t size)
{
	const char *path, *p, *end;

	if (strchr(prog, '/')) {
		snprintf(buf, size, "%s", prog);
		return access(buf, X_OK) ? -errno : 0;
	}
	path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (p = path;; p = end + 1) {
		end = strchrnul(p, ':');
		snprintf(buf, size, "%.*s/%s", (int)(end - p), p == end ? "." : p, prog);
		if (p == end)
			snprintf(buf, size, "./%s", prog);
		if (!access(buf, X_OK))
			return 0;
		if (!*end)
			return -ENOENT;
	}
}

/*
 * True if the ELF at path has no program interpreter (statically linked,
 * or static-pie), so LD_PRELOAD cannot reach it. Scripts and unreadable
 * files are false: their interpreter is dynamic, or exec will say why.
 */
static bool needs_supervisor(const char *path)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	bool interp = false;
	int fd, i;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (pread(fd, &eh, sizeof(eh), 0) != sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(ph)) {
		close(fd);
		return false;
	}
	for (i = 0; i < eh.e_phnum; i++) {
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph))) !=
		    sizeof(ph))
			break;
		if (ph.p_type == PT_INTERP)
			interp = true;
	}
	close(fd);
	return !interp;
}

/* The preload: --preload, $DMABUF_PRELOAD, the installed one, or the one of
 * the build tree this dmabuf-run belongs to. */
static int find_preload(const char *opt, char *buf, size_t size)
{
	char self[PATH_MAX - 64];
	ssize_t n;
	char *slash;

	if (!opt)
		opt = getenv("DMABUF_PRELOAD");
	if (opt) {
		if (!realpath(opt, buf))
			return -errno;
		return 0;
	}
	if (!access(DMABUF_PRELOAD_PATH, R_OK) && realpath(DMABUF_PRELOAD_PATH, buf))
		return 0;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(buf, size, "%s/../src/uapi/libdmabuf-preload.so", self);
			if (!access(buf, R_OK))
				return 0;
		}
	}
	return -ENOENT;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "leaks", optional_argument, NULL, 'l' },
		{ "strict", no_argument, NULL, 's' },
		{ "trace", no_argument, NULL, 't' },
		{ "cma-heap", required_argument, NULL, 'c' },
		{ "root", required_argument, NULL, 'r' },
		{ "preload", required_argument, NULL, 'p' },
		{ "seccomp", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char preload[PATH_MAX], prog[PATH_MAX], *ld;
	const char *preload_opt = NULL, *old;
	bool force_seccomp = false;
	int c, ret;

	/* '+': options stop at PROGRAM, whose own options are its own. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (optarg && strcmp(optarg, "report") && strcmp(optarg, "fatal")) {
				fprintf(stderr, "dmabuf-run: --leaks takes report or fatal\n");
				return 2;
			}
			setenv("DMABUF_UAPI_LEAKS", optarg ? optarg : "report", 1);
			break;
		case 's':
			setenv("DMABUF_UAPI_STRICT", "1", 1);
			break;
		case 't':
			setenv("DMABUF_UAPI_TRACE", "1", 1);
			break;
		case 'c':
			if (!*optarg || strchr(optarg, '/')) {
				fprintf(stderr, "dmabuf-run: --cma-heap: not a heap name: '%s'\n",
					optarg);
				return 2;
			}
			setenv("DMABUF_UAPI_CMA_HEAP", optarg, 1);
			break;
		case 'r':
			if (optarg[0] != '/') {
				fprintf(stderr, "dmabuf-run: --root needs an absolute path\n");
				return 2;
			}
			setenv("DMABUF_UAPI_ROOT", optarg, 1);
			break;
		case 'p':
			preload_opt = optarg;
			break;
		case 'S':
			force_seccomp = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	ret = find_program(argv[optind], prog, sizeof(prog));
	if (ret) {
		fprintf(stderr, "dmabuf-run: %s: %s\n", argv[optind], strerror(-ret));
		return 127;
	}
	if (force_seccomp && !dmb_run_supervised) {
		fprintf(stderr, "dmabuf-run: --seccomp: this dmabuf-run has no seccomp supervisor\n");
		return 2;
	}
	if (force_seccomp || needs_supervisor(prog)) {
		if (dmb_run_supervised)
			return dmb_run_supervised(argv + optind);
		fprintf(stderr, "dmabuf-run: %s is statically linked: the preload cannot reach it "
			"and this dmabuf-run has no seccomp supervisor; running it without "
			"emulation\n", prog);
	}
	ret = find_preload(preload_opt, preload, sizeof(preload));
	if (ret) {
		fprintf(stderr, "dmabuf-run: cannot find libdmabuf-preload.so (%s); "
			"set --preload or DMABUF_PRELOAD\n", strerror(-ret));
		return 127;
	}
	old = getenv("LD_PRELOAD");
	if (old && *old) {
		if (asprintf(&ld, "%s:%s", old, preload) < 0)
			return 127;
	} else {
		ld = preload;
	}
	setenv("LD_PRELOAD", ld, 1);
	execv(prog, argv + optind);
	ret = errno;
	fprintf(stderr, "dmabuf-run: %s: %s\n", prog, strerror(ret));
	return ret == ENOENT ? 127 : 126;
}
