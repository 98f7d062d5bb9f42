/* SPDX-License-Identifier: MIT */
/*
 * Conformance programs: written only against the kernel's uapi headers, so
 * the same binary runs on a real kernel (as /init of a VM) and under
 * dmabuf-run. Each check prints one line "<id> <result>": "ok", a value, or
 * the errno name. Values that differ between runs by nature (fence contexts,
 * inode numbers) are printed normalised, so two runs can be compared as text.
 */
#ifndef CONF_H
#define CONF_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PAGE 4096u

/* One result line. */
void conf_line(const char *id, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "ok" for r >= 0, else the name of errno (the syscall convention). */
void conf_sys(const char *id, long r);
/* "ok" for r == 0, "ok" for r > 0 too, else the name of -r. */
void conf_neg(const char *id, long r);
/* errno name ("EINVAL"), or "E<number>" when unknown. */
const char *conf_errname(int e);

/* A check that cannot run here: the device or feature is missing. */
void conf_unavailable(const char *id, const char *what);

/* Helpers shared by the sections. Each returns a new fd or -errno. */
int conf_heap_open(const char *name);
int conf_heap_alloc(size_t len, unsigned int fd_flags);
int conf_memfd(size_t size, unsigned int seals);
int conf_export_sync(int dmabuf_fd, unsigned int flags);
int conf_cloexec(int fd); /* 1, 0 or -errno */
/* Value of field "key" in /proc/self/fdinfo/<fd> into buf; 0 or -errno. */
int conf_fdinfo(int fd, const char *key, char *buf, size_t len);
/* Comma-joined field names of /proc/self/fdinfo/<fd>. */
int conf_fdinfo_keys(int fd, char *buf, size_t len);
/* readlink of /proc/self/fd/<fd>, digits replaced by '#'. */
int conf_fdlink(int fd, char *buf, size_t len);
/* Replace every run of decimal digits by '#'. */
void conf_normalise(char *s);
/* poll revents as "IN|OUT", "0" or the errno name. */
void conf_poll(const char *id, int fd, short events);

void conf_heaps(void);
void conf_udmabuf(void);
void conf_dmabuf(void);
void conf_syncfile(void);
void conf_swsync(void);
void conf_poll_section(void);

#endif
