/* SPDX-License-Identifier: MIT */
/*
 * Which programs need the seccomp supervisor: ELF files without a
 * PT_INTERP program header never run the dynamic loader, so a preload
 * cannot reach them.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seccomp.h"

/* pread exactly n bytes at off: 0, or -EIO for a short file. */
static int read_at(int fd, void *buf, size_t n, off_t off)
{
	ssize_t r = pread(fd, buf, n, off);

	if (r < 0)
		return -errno;
	return (size_t)r == n ? 0 : -EIO;
}

/* Scans nph program headers of entsize bytes at phoff for PT_INTERP. The
 * p_type field is the first 32-bit word in both ELF classes. */
static int has_interp(int fd, uint64_t phoff, unsigned int nph, unsigned int entsize)
{
	unsigned char ph[sizeof(Elf64_Phdr)];
	uint32_t type;
	unsigned int i;
	int ret;

	if (entsize < sizeof(type) || entsize > sizeof(ph))
		return -ENOEXEC;
	for (i = 0; i < nph; i++) {
		ret = read_at(fd, ph, entsize, (off_t)(phoff + (uint64_t)i * entsize));
		if (ret)
			return ret;
		memcpy(&type, ph, sizeof(type));
		if (type == PT_INTERP)
			return 1;
	}
	return 0;
}

int dmb_seccomp_elf_is_static(const char *path)
{
	union {
		unsigned char ident[EI_NIDENT];
		Elf32_Ehdr e32;
		Elf64_Ehdr e64;
	} h;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = read_at(fd, &h, sizeof(h.e64), 0);
	if (ret == -EIO)
		ret = read_at(fd, &h, sizeof(h.e32), 0);
	if (ret || memcmp(h.ident, ELFMAG, SELFMAG)) {
		/* Not ELF (a script, or too short): what runs is its
		 * interpreter, which is looked at when it is exec'd. */
		close(fd);
		return ret == -EIO || ret == 0 ? 0 : ret;
	}
	/* Only ET_EXEC and ET_DYN run; a host-endian check is enough since
	 * a foreign-endian binary would not run here either. */
	if (h.ident[EI_CLASS] == ELFCLASS64)
		ret = has_interp(fd, h.e64.e_phoff, h.e64.e_phnum, h.e64.e_phentsize);
	else if (h.ident[EI_CLASS] == ELFCLASS32)
		ret = has_interp(fd, h.e32.e_phoff, h.e32.e_phnum, h.e32.e_phentsize);
	else
		ret = -ENOEXEC;
	close(fd);
	if (ret < 0)
		return ret;
	return !ret;
}

int dmb_seccomp_find_program(const char *name, char *buf, size_t size)
{
	const char *path, *p, *end;
	size_t dirlen;

	if (!name || !*name)
		return -ENOENT;
	if (strchr(name, '/')) {
		if (strlen(name) >= size)
			return -ENAMETOOLONG;
		strcpy(buf, name);
		return 0;
	}
	/* execvp()'s default search path when PATH is unset. */
	path = getenv("PATH");
	if (!path)
		path = "/bin:/usr/bin";
	for (p = path;; p = end + 1) {
		end = strchrnul(p, ':');
		dirlen = (size_t)(end - p);
		/* An empty entry is the current directory. */
		if ((size_t)snprintf(buf, size, "%.*s%s%s", (int)dirlen, p,
				     dirlen ? "/" : "", name) >= size)
			return -ENAMETOOLONG;
		if (access(buf, X_OK) == 0)
			return 0;
		if (!*end)
			break;
	}
	return -ENOENT;
}
