/* SPDX-License-Identifier: MIT */
/*
 * The operations of a dma-buf file (the kernel's dma_buf_fops) on a system
 * heap buffer: SYNC, SET_NAME, EXPORT/IMPORT_SYNC_FILE, poll, lseek, mmap,
 * read/write/ftruncate, fstat, fdinfo, the /proc/self/fd link and reopen,
 * and the file shared with a child by fork and by SCM_RIGHTS.
 */
#include "conf.h"

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/sync_file.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define SZ (2 * PAGE)

static int do_sync(int fd, uint64_t flags)
{
	struct dma_buf_sync s = { .flags = flags };

	return ioctl(fd, DMA_BUF_IOCTL_SYNC, &s);
}

static void sync_checks(int fd, int ro)
{
	conf_sys("dmabuf.sync.start_read", do_sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ));
	conf_sys("dmabuf.sync.end_read", do_sync(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ));
	conf_sys("dmabuf.sync.start_write", do_sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE));
	conf_sys("dmabuf.sync.end_write", do_sync(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE));
	conf_sys("dmabuf.sync.start_rw", do_sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW));
	conf_sys("dmabuf.sync.end_rw", do_sync(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW));
	conf_sys("dmabuf.sync.end_without_start", do_sync(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW));
	conf_sys("dmabuf.sync.start_twice_1", do_sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ));
	conf_sys("dmabuf.sync.start_twice_2", do_sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE));
	conf_sys("dmabuf.sync.end_other_dir", do_sync(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ));
	conf_sys("dmabuf.sync.end_other_dir_2", do_sync(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE));
	conf_sys("dmabuf.sync.flags0", do_sync(fd, 0));
	conf_sys("dmabuf.sync.end_no_dir", do_sync(fd, DMA_BUF_SYNC_END));
	conf_sys("dmabuf.sync.bit3", do_sync(fd, DMA_BUF_SYNC_RW | 8));
	conf_sys("dmabuf.sync.bit63", do_sync(fd, DMA_BUF_SYNC_RW | (1ull << 63)));
	conf_sys("dmabuf.sync.efault", ioctl(fd, DMA_BUF_IOCTL_SYNC, (void *)8));
	conf_sys("dmabuf.sync.wrong_size", ioctl(fd, _IOW(DMA_BUF_BASE, 0, uint32_t), &(uint64_t){ DMA_BUF_SYNC_READ }));
	conf_sys("dmabuf.sync.as_iowr", ioctl(fd, _IOWR(DMA_BUF_BASE, 0, struct dma_buf_sync), &(uint64_t){ DMA_BUF_SYNC_READ }));
	conf_sys("dmabuf.sync.rdonly_write", do_sync(ro, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE));
	conf_sys("dmabuf.sync.rdonly_write_end", do_sync(ro, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE));
}

static void name_checks(int fd)
{
	char v[128], longname[200];

	conf_line("dmabuf.name.initial", "%s", conf_fdinfo(fd, "name", v, sizeof(v)) ? "absent" : v);
	conf_line("dmabuf.name.initial_link", "%s", conf_fdlink(fd, v, sizeof(v)) ? "none" : v);
	conf_sys("dmabuf.name.set_a", ioctl(fd, DMA_BUF_SET_NAME_A, "conf-a"));
	conf_line("dmabuf.name.set_a_fdinfo", "%s", conf_fdinfo(fd, "name", v, sizeof(v)) ? "absent" : v);
	conf_sys("dmabuf.name.set_b", ioctl(fd, DMA_BUF_SET_NAME_B, "conf-b"));
	conf_line("dmabuf.name.set_b_fdinfo", "%s", conf_fdinfo(fd, "name", v, sizeof(v)) ? "absent" : v);
	conf_line("dmabuf.name.link", "%s", conf_fdlink(fd, v, sizeof(v)) ? "none" : v);
	memset(longname, 'n', sizeof(longname));
	longname[31] = '\0';
	conf_sys("dmabuf.name.len31", ioctl(fd, DMA_BUF_SET_NAME_B, longname));
	conf_line("dmabuf.name.len31_fdinfo_len", "%zu",
		  conf_fdinfo(fd, "name", v, sizeof(v)) ? (size_t)0 : strlen(v));
	longname[31] = 'n';
	longname[32] = '\0';
	conf_sys("dmabuf.name.len32", ioctl(fd, DMA_BUF_SET_NAME_B, longname));
	conf_line("dmabuf.name.len32_kept_old", "%zu",
		  conf_fdinfo(fd, "name", v, sizeof(v)) ? (size_t)0 : strlen(v));
	longname[32] = 'n';
	longname[199] = '\0';
	conf_sys("dmabuf.name.len199", ioctl(fd, DMA_BUF_SET_NAME_B, longname));
	conf_sys("dmabuf.name.efault", ioctl(fd, DMA_BUF_SET_NAME_B, (void *)8));
	conf_sys("dmabuf.name.null", ioctl(fd, DMA_BUF_SET_NAME_B, NULL));
	conf_sys("dmabuf.name.empty", ioctl(fd, DMA_BUF_SET_NAME_B, ""));
	conf_line("dmabuf.name.empty_fdinfo", "%s", conf_fdinfo(fd, "name", v, sizeof(v)) ? "absent" : v);
	conf_line("dmabuf.name.empty_link", "%s", conf_fdlink(fd, v, sizeof(v)) ? "none" : v);
	conf_sys("dmabuf.name.with_space", ioctl(fd, DMA_BUF_SET_NAME_B, "a b"));
	conf_line("dmabuf.name.with_space_link", "%s", conf_fdlink(fd, v, sizeof(v)) ? "none" : v);
	conf_sys("dmabuf.name.other_size", ioctl(fd, _IOW(DMA_BUF_BASE, 1, char[16]), "x"));
	conf_sys("dmabuf.name.as_iowr", ioctl(fd, _IOWR(DMA_BUF_BASE, 1, uint64_t), "x"));
	conf_sys("dmabuf.name.rename", ioctl(fd, DMA_BUF_SET_NAME_B, "final"));
}

static void ioctl_checks(int fd)
{
	int n = 0;

	conf_sys("dmabuf.ioctl.unknown_nr", ioctl(fd, _IO(DMA_BUF_BASE, 9)));
	conf_sys("dmabuf.ioctl.other_magic", ioctl(fd, _IOW('Q', 0, struct dma_buf_sync), &n));
	conf_sys("dmabuf.ioctl.tcgets", ioctl(fd, TCGETS, &n));
	conf_sys("dmabuf.ioctl.fionread", ioctl(fd, FIONREAD, &n));
	conf_sys("dmabuf.ioctl.fioclex", ioctl(fd, FIOCLEX));
	conf_line("dmabuf.ioctl.fioclex_set", "%d", conf_cloexec(fd));
	conf_sys("dmabuf.ioctl.fionbio", ioctl(fd, FIONBIO, &(int){ 0 }));
}

static void fence_checks(int fd)
{
	struct dma_buf_export_sync_file e = { .flags = DMA_BUF_SYNC_READ, .fd = -1 };
	struct dma_buf_import_sync_file im = { .flags = DMA_BUF_SYNC_WRITE };
	int r, sf;

	r = ioctl(fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &e);
	conf_sys("dmabuf.export.read", r);
	if (r >= 0) {
		conf_line("dmabuf.export.cloexec", "%d", conf_cloexec(e.fd));
		char link[128];
		conf_line("dmabuf.export.link", "%s", conf_fdlink(e.fd, link, sizeof(link)) ? "none" : link);
		conf_poll("dmabuf.export.poll", e.fd, POLLIN);
		close(e.fd);
	}
	sf = conf_export_sync(fd, DMA_BUF_SYNC_WRITE);
	conf_neg("dmabuf.export.write", sf);
	if (sf >= 0)
		close(sf);
	sf = conf_export_sync(fd, DMA_BUF_SYNC_RW);
	conf_neg("dmabuf.export.rw", sf);
	conf_neg("dmabuf.export.flags0", conf_export_sync(fd, 0));
	conf_neg("dmabuf.export.flag_end", conf_export_sync(fd, DMA_BUF_SYNC_READ | DMA_BUF_SYNC_END));
	conf_neg("dmabuf.export.flag_bit31", conf_export_sync(fd, DMA_BUF_SYNC_READ | (1u << 31)));
	conf_sys("dmabuf.export.efault", ioctl(fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, (void *)8));
	e.flags = DMA_BUF_SYNC_READ;
	e.fd = 12345;
	r = ioctl(fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &e);
	conf_line("dmabuf.export.fd_in_ignored", "%s", r < 0 ? conf_errname(errno) : e.fd != 12345 ? "yes" : "no");
	if (r >= 0)
		close(e.fd);

	if (sf >= 0) {
		im.fd = sf;
		conf_sys("dmabuf.import.write", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
		im.flags = DMA_BUF_SYNC_READ;
		conf_sys("dmabuf.import.read", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
		im.flags = DMA_BUF_SYNC_RW;
		conf_sys("dmabuf.import.rw", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
		im.flags = 0;
		conf_sys("dmabuf.import.flags0", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
		im.flags = DMA_BUF_SYNC_WRITE | DMA_BUF_SYNC_END;
		conf_sys("dmabuf.import.flag_end", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
		conf_line("dmabuf.import.sync_file_still_open", "%s", fcntl(sf, F_GETFD) >= 0 ? "yes" : "no");
		close(sf);
	}
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) == 0) {
		im = (struct dma_buf_import_sync_file){ .flags = DMA_BUF_SYNC_WRITE, .fd = pfd[0] };
		conf_sys("dmabuf.import.not_sync_file", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
		close(pfd[0]);
		close(pfd[1]);
		conf_sys("dmabuf.import.closed_fd", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
	}
	im = (struct dma_buf_import_sync_file){ .flags = DMA_BUF_SYNC_WRITE, .fd = fd };
	conf_sys("dmabuf.import.dmabuf_fd", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
	im.fd = -1;
	conf_sys("dmabuf.import.fd_minus1", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
	conf_sys("dmabuf.import.efault", ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, (void *)8));

	/* After importing signalled fences: still ready, one fence exported. */
	sf = conf_export_sync(fd, DMA_BUF_SYNC_WRITE);
	if (sf >= 0) {
		struct sync_file_info info = { 0 };
		r = ioctl(sf, SYNC_IOC_FILE_INFO, &info);
		if (r < 0)
			conf_line("dmabuf.export.after_import_fences", "%s", conf_errname(errno));
		else
			conf_line("dmabuf.export.after_import_fences", "%u", info.num_fences);
		conf_line("dmabuf.export.after_import_status", "%d", r < 0 ? -99 : info.status);
		close(sf);
	}
}

static void poll_checks(int fd)
{
	conf_poll("dmabuf.poll.in", fd, POLLIN);
	conf_poll("dmabuf.poll.out", fd, POLLOUT);
	conf_poll("dmabuf.poll.inout", fd, POLLIN | POLLOUT);
	conf_poll("dmabuf.poll.none", fd, 0);
	conf_poll("dmabuf.poll.pri", fd, POLLPRI);

	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT }, out;
	if (ep >= 0) {
		conf_sys("dmabuf.epoll.add", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
		int n = epoll_wait(ep, &out, 1, 0);
		conf_line("dmabuf.epoll.wait", "%s", n < 0 ? conf_errname(errno) : n == 0 ? "0"
						 : (out.events & (EPOLLIN | EPOLLOUT)) == (EPOLLIN | EPOLLOUT) ? "IN|OUT"
						 : (out.events & EPOLLIN)                                     ? "IN"
						 : "OTHER");
		ev.events = EPOLLIN | EPOLLET;
		conf_sys("dmabuf.epoll.mod_et", epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev));
		close(ep);
	}
	fd_set r, w;
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(fd, &r);
	FD_SET(fd, &w);
	struct timeval tv = { 0, 0 };
	int n = select(fd + 1, &r, &w, NULL, &tv);
	conf_line("dmabuf.select", "%s", n < 0 ? conf_errname(errno)
					 : FD_ISSET(fd, &r) && FD_ISSET(fd, &w) ? "rw"
					 : FD_ISSET(fd, &r)                     ? "r"
					 : FD_ISSET(fd, &w)                     ? "w"
										: "none");
}

static void lseek_value(const char *id, int fd, off_t off, int whence)
{
	off_t r = lseek(fd, off, whence);

	if (r < 0)
		conf_line(id, "%s", conf_errname(errno));
	else
		conf_line(id, "%lld", (long long)r);
}

static void seek_checks(int fd)
{
	lseek_value("dmabuf.lseek.set0", fd, 0, SEEK_SET);
	lseek_value("dmabuf.lseek.end0", fd, 0, SEEK_END);
	lseek_value("dmabuf.lseek.cur0", fd, 0, SEEK_CUR);
	lseek_value("dmabuf.lseek.set1", fd, 1, SEEK_SET);
	lseek_value("dmabuf.lseek.end_minus1", fd, -1, SEEK_END);
	lseek_value("dmabuf.lseek.data", fd, 0, SEEK_DATA);
	lseek_value("dmabuf.lseek.hole", fd, 0, SEEK_HOLE);
	lseek_value("dmabuf.lseek.whence99", fd, 0, 99);
	lseek_value("dmabuf.lseek.pos_after_end", fd, 0, SEEK_SET);
	char v[64];
	lseek(fd, 0, SEEK_END);
	conf_line("dmabuf.fdinfo.pos_after_seek_end", "%s", conf_fdinfo(fd, "pos", v, sizeof(v)) ? "none" : v);
	lseek(fd, 0, SEEK_SET);
}

static void mmap_check(const char *id, int fd, size_t len, int prot, int flags, off_t off)
{
	void *p = mmap(NULL, len, prot, flags, fd, off);

	conf_line(id, "%s", p == MAP_FAILED ? conf_errname(errno) : "ok");
	if (p != MAP_FAILED)
		munmap(p, len);
}

static void mmap_checks(int fd, int ro)
{
	mmap_check("dmabuf.mmap.full", fd, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	mmap_check("dmabuf.mmap.second_page", fd, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, PAGE);
	mmap_check("dmabuf.mmap.len_beyond", fd, SZ + PAGE, PROT_READ, MAP_SHARED, 0);
	mmap_check("dmabuf.mmap.off_beyond", fd, PAGE, PROT_READ, MAP_SHARED, SZ);
	mmap_check("dmabuf.mmap.off_plus_len_beyond", fd, SZ, PROT_READ, MAP_SHARED, PAGE);
	mmap_check("dmabuf.mmap.len0", fd, 0, PROT_READ, MAP_SHARED, 0);
	mmap_check("dmabuf.mmap.off_unaligned", fd, PAGE, PROT_READ, MAP_SHARED, 100);
	mmap_check("dmabuf.mmap.len_partial_page", fd, 100, PROT_READ, MAP_SHARED, 0);
	/* The system heap maps page by page, and a private (COW) pfn mapping
	 * must be remapped whole: two order-0 pages are refused. */
	mmap_check("dmabuf.mmap.private", fd, SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0);
	mmap_check("dmabuf.mmap.private_one_page", fd, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0);
	mmap_check("dmabuf.mmap.private_ro", fd, SZ, PROT_READ, MAP_PRIVATE, 0);
	mmap_check("dmabuf.mmap.prot_exec", fd, PAGE, PROT_READ | PROT_EXEC, MAP_SHARED, 0);
	mmap_check("dmabuf.mmap.prot_none", fd, PAGE, PROT_NONE, MAP_SHARED, 0);
	mmap_check("dmabuf.mmap.shared_validate", fd, PAGE, PROT_READ, MAP_SHARED_VALIDATE, 0);
	mmap_check("dmabuf.mmap.rdonly_read", ro, PAGE, PROT_READ, MAP_SHARED, 0);
	mmap_check("dmabuf.mmap.rdonly_write_shared", ro, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	mmap_check("dmabuf.mmap.rdonly_write_private", ro, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0);
	void *p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, ro, 0);
	if (p != MAP_FAILED) {
		conf_sys("dmabuf.mmap.rdonly_mprotect_write", mprotect(p, PAGE, PROT_READ | PROT_WRITE));
		munmap(p, PAGE);
	}

	/* Two mappings of one buffer see each other's writes; the data lives
	 * in the buffer, not in the mapping. */
	unsigned char *a = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	unsigned char *b = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, PAGE);
	if (a != MAP_FAILED && b != MAP_FAILED) {
		a[PAGE + 5] = 0x5a;
		conf_line("dmabuf.mmap.coherent", "%s", b[5] == 0x5a ? "same" : "differs");
	}
	if (b != MAP_FAILED)
		munmap(b, PAGE);
	if (a != MAP_FAILED) {
		munmap(a, SZ);
		a = mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
		conf_line("dmabuf.mmap.persists", "%s", a != MAP_FAILED && a[PAGE + 5] == 0x5a ? "same" : "differs");
		if (a != MAP_FAILED)
			munmap(a, SZ);
	}
	/* Private mapping: writes are private copies. */
	unsigned char *pr = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, PAGE);
	if (pr != MAP_FAILED) {
		pr[5] = 0x11;
		unsigned char *s = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, PAGE);
		conf_line("dmabuf.mmap.private_write_visible", "%s",
			  s == MAP_FAILED ? conf_errname(errno) : s[5] == 0x11 ? "yes" : "no");
		if (s != MAP_FAILED)
			munmap(s, PAGE);
		munmap(pr, PAGE);
	}
	/* A mapping outlives the fd. */
	int dupfd = dup(fd);
	a = mmap(NULL, SZ, PROT_READ, MAP_SHARED, dupfd, 0);
	close(dupfd);
	conf_line("dmabuf.mmap.after_close", "%s", a != MAP_FAILED && a[PAGE + 5] == 0x5a ? "same" : "differs");
	if (a != MAP_FAILED) {
		conf_sys("dmabuf.mmap.mremap_grow", (long)mremap(a, SZ, SZ + PAGE, 0) == -1 ? -1 : 0);
		munmap(a, SZ);
	}
}

static void io_checks(int fd, int ro)
{
	char buf[16] = { 0 };
	struct iovec iov = { buf, sizeof(buf) };

	conf_sys("dmabuf.io.read", read(fd, buf, sizeof(buf)));
	conf_sys("dmabuf.io.write", write(fd, buf, sizeof(buf)));
	conf_sys("dmabuf.io.pread", pread(fd, buf, sizeof(buf), 0));
	conf_sys("dmabuf.io.pwrite", pwrite(fd, buf, sizeof(buf), 0));
	conf_sys("dmabuf.io.readv", readv(fd, &iov, 1));
	conf_sys("dmabuf.io.read0", read(fd, buf, 0));
	conf_sys("dmabuf.io.write_rdonly", write(ro, buf, sizeof(buf)));
	conf_sys("dmabuf.io.ftruncate", ftruncate(fd, PAGE));
	conf_sys("dmabuf.io.ftruncate_same", ftruncate(fd, SZ));
	conf_sys("dmabuf.io.fallocate", fallocate(fd, 0, 0, PAGE));
	conf_sys("dmabuf.io.fsync", fsync(fd));
	conf_sys("dmabuf.io.fdatasync", fdatasync(fd));
	conf_sys("dmabuf.io.add_seals", fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
	conf_sys("dmabuf.io.get_seals", fcntl(fd, F_GET_SEALS));
	conf_sys("dmabuf.io.flock_sh", flock(fd, LOCK_SH | LOCK_NB));
	conf_sys("dmabuf.io.flock_un", flock(fd, LOCK_UN));
	conf_line("dmabuf.io.size_unchanged", "%lld", (long long)lseek(fd, 0, SEEK_END));
	lseek(fd, 0, SEEK_SET);
}

static void stat_checks(int fd, int other)
{
	struct stat st, st2;
	struct statfs sfs;

	if (fstat(fd, &st) < 0) {
		conf_line("dmabuf.fstat", "%s", conf_errname(errno));
		return;
	}
	conf_line("dmabuf.fstat.size", "%lld", (long long)st.st_size);
	conf_line("dmabuf.fstat.type", "0%o", st.st_mode & S_IFMT);
	conf_line("dmabuf.fstat.perm", "0%o", st.st_mode & 07777);
	conf_line("dmabuf.fstat.nlink", "%lu", (unsigned long)st.st_nlink);
	conf_line("dmabuf.fstat.blocks", "%lld", (long long)st.st_blocks);
	conf_line("dmabuf.fstat.blksize", "%ld", (long)st.st_blksize);
	conf_line("dmabuf.fstat.uid_is_euid", "%s", st.st_uid == geteuid() ? "yes" : "no");
	conf_line("dmabuf.fstat.ino_distinct", "%s",
		  fstat(other, &st2) == 0 && st2.st_ino != st.st_ino ? "yes" : "no");
	conf_line("dmabuf.fstat.dev_same", "%s", st2.st_dev == st.st_dev ? "yes" : "no");
	conf_line("dmabuf.fstatfs.type", "%s",
		  fstatfs(fd, &sfs) < 0 ? conf_errname(errno)
		  : (unsigned long)sfs.f_type == 0x444d4142ul ? "DMA_BUF_MAGIC"
							: "other");
}

static void fdinfo_checks(int fd, int ro)
{
	char v[256];

	conf_line("dmabuf.fdinfo.keys", "%s", conf_fdinfo_keys(fd, v, sizeof(v)) ? "none" : v);
	conf_line("dmabuf.fdinfo.size", "%s", conf_fdinfo(fd, "size", v, sizeof(v)) ? "none" : v);
	conf_line("dmabuf.fdinfo.flags", "%s", conf_fdinfo(fd, "flags", v, sizeof(v)) ? "none" : v);
	conf_line("dmabuf.fdinfo.flags_rdonly", "%s", conf_fdinfo(ro, "flags", v, sizeof(v)) ? "none" : v);
	conf_line("dmabuf.fdinfo.pos", "%s", conf_fdinfo(fd, "pos", v, sizeof(v)) ? "none" : v);
	conf_line("dmabuf.fdinfo.exp_name", "%s", conf_fdinfo(fd, "exp_name", v, sizeof(v)) ? "none" : v);
	conf_line("dmabuf.fdinfo.count", "%s", conf_fdinfo(fd, "count", v, sizeof(v)) ? "none" : v);
	int d = dup(fd);
	conf_line("dmabuf.fdinfo.count_dup", "%s", conf_fdinfo(fd, "count", v, sizeof(v)) ? "none" : v);
	void *p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	conf_line("dmabuf.fdinfo.count_dup_mmap", "%s", conf_fdinfo(fd, "count", v, sizeof(v)) ? "none" : v);
	close(d);
	conf_line("dmabuf.fdinfo.count_mmap", "%s", conf_fdinfo(fd, "count", v, sizeof(v)) ? "none" : v);
	if (p != MAP_FAILED)
		munmap(p, PAGE);
	conf_line("dmabuf.fdinfo.count_back", "%s", conf_fdinfo(fd, "count", v, sizeof(v)) ? "none" : v);
}

static void proc_checks(int fd)
{
	char path[64], v[128];
	int r;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = open(path, O_RDWR | O_CLOEXEC);
	conf_sys("dmabuf.proc.reopen_rdwr", r);
	if (r >= 0) {
		conf_line("dmabuf.proc.reopen_same_buffer", "%s",
			  conf_fdinfo(r, "exp_name", v, sizeof(v)) ? "no" : "yes");
		close(r);
	}
	r = open(path, O_RDONLY | O_CLOEXEC);
	conf_sys("dmabuf.proc.reopen_rdonly", r);
	if (r >= 0)
		close(r);
	struct stat st;
	conf_sys("dmabuf.proc.stat_link", stat(path, &st));
	conf_sys("dmabuf.proc.access", access(path, R_OK));
}

/* The file passed to a child: by fork and over SCM_RIGHTS. The child
 * reads the parent's pattern through its own mapping. */
static void child_checks(int fd)
{
	unsigned char *p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	char v[64];
	int sv[2];

	if (p == MAP_FAILED)
		return;
	memset(p, 0x3c, SZ);
	munmap(p, SZ);

	/* go: parent -> child "exit now"; ready: child -> parent "mapped". */
	int go[2], ready[2];
	if (pipe2(go, O_CLOEXEC) < 0)
		return;
	if (pipe2(ready, O_CLOEXEC) < 0) {
		close(go[0]);
		close(go[1]);
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		close(go[1]);
		close(ready[0]);
		unsigned char *q = mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
		int okv = q != MAP_FAILED && q[0] == 0x3c && q[SZ - 1] == 0x3c;
		(void)!write(ready[1], okv ? "y" : "n", 1);
		(void)!read(go[0], &c, 1);
		_exit(okv ? 0 : 1);
	}
	close(ready[1]);
	char ans0 = 0;
	(void)!read(ready[0], &ans0, 1);
	close(ready[0]);
	/* parent fd + child fd + child mapping */
	conf_line("dmabuf.fork.count", "%s", conf_fdinfo(fd, "count", v, sizeof(v)) ? "none" : v);
	close(go[1]);
	int st = 0;
	waitpid(pid, &st, 0);
	close(go[0]);
	conf_line("dmabuf.fork.child_reads", "%s",
		  ans0 == 'y' && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "same" : "differs");
	conf_line("dmabuf.fork.count_after", "%s", conf_fdinfo(fd, "count", v, sizeof(v)) ? "none" : v);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		char c, cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { &c, 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
				    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		/* Close the inherited copy so the child holds only the received fd. */
		close(fd);
		if (recvmsg(sv[1], &m, MSG_CMSG_CLOEXEC) != 1)
			_exit(2);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		if (!cm || cm->cmsg_type != SCM_RIGHTS)
			_exit(3);
		int rfd;
		memcpy(&rfd, CMSG_DATA(cm), sizeof(int));
		unsigned char *q = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
		int okv = q != MAP_FAILED && q[0] == 0x3c && q[SZ - 1] == 0x3c;
		if (q != MAP_FAILED)
			q[1] = 0x4d; /* the parent sees the child's write */
		char exp[64] = "";
		conf_fdinfo(rfd, "exp_name", exp, sizeof(exp));
		okv = okv && !strcmp(exp, "system");
		struct dma_buf_sync s = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
		okv = okv && ioctl(rfd, DMA_BUF_IOCTL_SYNC, &s) == 0;
		(void)!write(sv[1], okv ? "y" : "n", 1);
		(void)!read(sv[1], &c, 1); /* hold rfd until the parent looked */
		_exit(okv ? 0 : 1);
	}
	close(sv[1]);
	char c = 'f', cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &c, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	conf_sys("dmabuf.scm.send", sendmsg(sv[0], &m, 0));
	char ans = 0;
	(void)!read(sv[0], &ans, 1);
	conf_line("dmabuf.scm.child_maps_and_syncs", "%s", ans == 'y' ? "yes" : "no");
	/* parent fd + child fd + child mapping */
	conf_line("dmabuf.scm.count_child_holds", "%s", conf_fdinfo(fd, "count", v, sizeof(v)) ? "none" : v);
	(void)!write(sv[0], "x", 1);
	waitpid(pid, &st, 0);
	close(sv[0]);
	conf_line("dmabuf.scm.child_exit", "%d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	conf_line("dmabuf.scm.count_after_exit", "%s", conf_fdinfo(fd, "count", v, sizeof(v)) ? "none" : v);
	p = mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
	conf_line("dmabuf.scm.child_write_visible", "%s", p != MAP_FAILED && p[1] == 0x4d ? "yes" : "no");
	if (p != MAP_FAILED)
		munmap(p, SZ);
}

void conf_dmabuf(void)
{
	int fd = conf_heap_alloc(SZ, O_RDWR | O_CLOEXEC);
	int ro = conf_heap_alloc(SZ, O_RDONLY | O_CLOEXEC);
	int other = conf_heap_alloc(PAGE, O_RDWR | O_CLOEXEC);

	if (fd < 0 || ro < 0 || other < 0) {
		conf_unavailable("dmabuf.setup", conf_errname(fd < 0 ? -fd : ro < 0 ? -ro : -other));
		return;
	}
	fdinfo_checks(fd, ro);
	stat_checks(fd, other);
	sync_checks(fd, ro);
	name_checks(fd);
	ioctl_checks(fd);
	fence_checks(fd);
	poll_checks(fd);
	seek_checks(fd);
	mmap_checks(fd, ro);
	io_checks(fd, ro);
	proc_checks(fd);
	child_checks(fd);
	close(other);
	close(ro);
	close(fd);
}
