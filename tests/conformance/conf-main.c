/* SPDX-License-Identifier: MIT */
/*
 * dmabuf-conformance: runs every section and prints one line per check
 * between "CONF-BEGIN" and "CONF-END". As pid 1 (the /init of the
 * conformance VM) it first mounts what a normal system has mounted, and
 * powers the machine off at the end.
 *
 *   dmabuf-conformance [SECTION...]   sections: heap udmabuf dmabuf sync sw_sync poll
 */
#include "conf.h"

#include <ctype.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

void conf_line(const char *id, const char *fmt, ...)
{
	char val[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	/* A result is one token: spaces would break the "<id> <result>" form. */
	for (char *p = val; *p; p++)
		if (isspace((unsigned char)*p))
			*p = '_';
	if (!val[0])
		strcpy(val, "<empty>");
	printf("%s %s\n", id, val);
	fflush(stdout);
}

const char *conf_errname(int e)
{
	static char buf[16];
	const char *n = strerrorname_np(e);

	if (n)
		return n;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

void conf_sys(const char *id, long r)
{
	if (r >= 0)
		conf_line(id, "ok");
	else
		conf_line(id, "%s", conf_errname(errno));
}

void conf_neg(const char *id, long r)
{
	if (r >= 0)
		conf_line(id, "ok");
	else
		conf_line(id, "%s", conf_errname((int)-r));
}

void conf_unavailable(const char *id, const char *what)
{
	conf_line(id, "unavailable:%s", what);
}

int conf_heap_open(const char *name)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/dev/dma_heap/%s", name);
	fd = open(path, O_RDWR | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int conf_heap_alloc(size_t len, unsigned int fd_flags)
{
	struct dma_heap_allocation_data d = { .len = len, .fd_flags = fd_flags };
	int heap = conf_heap_open("system");
	int r;

	if (heap < 0)
		return heap;
	r = ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d);
	r = r < 0 ? -errno : (int)d.fd;
	close(heap);
	return r;
}

int conf_memfd(size_t size, unsigned int seals)
{
	int fd = memfd_create("conf", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	int e;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    (seals && fcntl(fd, F_ADD_SEALS, seals) < 0)) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int conf_export_sync(int dmabuf_fd, unsigned int flags)
{
	struct dma_buf_export_sync_file a = { .flags = flags, .fd = -1 };

	if (ioctl(dmabuf_fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &a) < 0)
		return -errno;
	return a.fd;
}

int conf_cloexec(int fd)
{
	int f = fcntl(fd, F_GETFD);

	if (f < 0)
		return -errno;
	return (f & FD_CLOEXEC) ? 1 : 0;
}

static FILE *fdinfo_open(int fd)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	return fopen(path, "re");
}

int conf_fdinfo(int fd, const char *key, char *buf, size_t len)
{
	char line[512];
	size_t klen = strlen(key);
	FILE *f = fdinfo_open(fd);
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) || line[klen] != ':')
			continue;
		char *v = line + klen + 1;
		while (*v == '\t' || *v == ' ')
			v++;
		v[strcspn(v, "\n")] = '\0';
		snprintf(buf, len, "%s", v);
		r = 0;
		break;
	}
	fclose(f);
	return r;
}

int conf_fdinfo_keys(int fd, char *buf, size_t len)
{
	char line[512];
	size_t used = 0;
	FILE *f = fdinfo_open(fd);

	if (!f)
		return -errno;
	buf[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (!colon || colon == line)
			continue;
		*colon = '\0';
		/* Continuation lines (e.g. epoll's "tfd:") have no leading key. */
		if (strchr(line, ' ') || strchr(line, '\t'))
			continue;
		used += (size_t)snprintf(buf + used, used < len ? len - used : 0,
					 "%s%s", used ? "," : "", line);
	}
	fclose(f);
	return 0;
}

void conf_normalise(char *s)
{
	char *w = s;

	for (char *r = s; *r;) {
		if (isdigit((unsigned char)*r)) {
			/* skip the run first: w may alias r */
			while (isdigit((unsigned char)*r))
				r++;
			*w++ = '#';
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

int conf_fdlink(int fd, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	conf_normalise(buf);
	return 0;
}

void conf_poll(const char *id, int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r = poll(&p, 1, 0);
	char out[64] = "";

	if (r < 0) {
		conf_line(id, "%s", conf_errname(errno));
		return;
	}
	if (p.revents & POLLIN)
		strcat(out, "|IN");
	if (p.revents & POLLOUT)
		strcat(out, "|OUT");
	if (p.revents & POLLERR)
		strcat(out, "|ERR");
	if (p.revents & POLLHUP)
		strcat(out, "|HUP");
	if (p.revents & POLLNVAL)
		strcat(out, "|NVAL");
	conf_line(id, "%s", out[0] ? out + 1 : "0");
}

/* As /init: the mounts a booted system has, so /dev, /proc, debugfs exist. */
static void init_mounts(void)
{
	mkdir("/dev", 0755);
	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mkdir("/tmp", 01777);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	mount("tmpfs", "/tmp", "tmpfs", 0, NULL);
	/* Results on the second serial port, which the VM script reads into a
	 * file; kernel messages stay on the console (ttyS0). */
	int fd = open("/dev/ttyS1", O_RDWR | O_NOCTTY);
	if (fd < 0)
		fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

/* Load the modules the VM script put in /modules, in the order of
 * /modules/order (for kernels that build udmabuf, heaps or sw_sync as
 * modules). finit_module takes compressed files when the kernel can
 * decompress them. */
static void init_modules(void)
{
	char line[256], path[300];
	FILE *f = fopen("/modules/order", "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!line[0])
			continue;
		snprintf(path, sizeof(path), "/modules/%s", line);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		int flags = strstr(line, ".ko.") ? 4 /* MODULE_INIT_COMPRESSED_FILE */ : 0;
		long r = fd < 0 ? -1 : syscall(SYS_finit_module, fd, "", flags);
		printf("# module %s %s\n", line, r == 0 || errno == EEXIST ? "loaded" : conf_errname(errno));
		if (fd >= 0)
			close(fd);
	}
	fclose(f);
}

static const struct {
	const char *name;
	void (*run)(void);
} sections[] = {
	{ "heap", conf_heaps },
	{ "udmabuf", conf_udmabuf },
	{ "dmabuf", conf_dmabuf },
	{ "sync", conf_syncfile },
	{ "sw_sync", conf_swsync },
	{ "poll", conf_poll_section },
};

int main(int argc, char **argv)
{
	int init = getpid() == 1;
	struct utsname u;

	if (init)
		init_mounts();
	/* A write to a file that is not writable must give its errno, not
	 * kill the run. */
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	uname(&u);
	printf("CONF-BEGIN %s %s\n", u.sysname, u.release);
	if (init)
		init_modules();
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		int want = argc < 2 || init;

		for (int a = 1; a < argc && !want; a++)
			want = !strcmp(argv[a], sections[i].name);
		if (want)
			sections[i].run();
	}
	printf("CONF-END\n");
	fflush(stdout);
	if (init) {
		sync();
		reboot(RB_POWER_OFF);
		for (;;)
			pause();
	}
	return 0;
}
