/* SPDX-License-Identifier: MIT */
/*
 * The seccomp front end of the uapi emulation: for programs a preload cannot
 * reach (static binaries, raw syscall()/inline-asm callers).
 *
 * dmabuf-run forks; the child installs a seccomp filter with
 * SECCOMP_FILTER_FLAG_NEW_LISTENER that turns only the few syscalls the
 * emulation answers into user notifications (open family, stat family and
 * access on any path, ioctl whose type byte is 'H','u','b','>','W', mmap of
 * a file), hands the listener to the parent and execs the program. The
 * parent is the supervisor: for each notification it reads the program's
 * arguments with process_vm_readv, answers through the emulation core
 * (uapi.h) with a struct dmb_uapi_io whose copies use
 * process_vm_readv/writev, whose fds come from pidfd_getfd() and go in with
 * SECCOMP_IOCTL_NOTIF_ADDFD, or lets the kernel run the call
 * (SECCOMP_USER_NOTIF_FLAG_CONTINUE) when it is not the emulation's.
 * See docs/seccomp.md.
 */
#pragma once

#include <stddef.h>

/*
 * Does the program at `path` need the supervisor? True for an ELF file
 * without PT_INTERP (static, static-pie): the dynamic loader never runs, so
 * LD_PRELOAD has no effect.
 * @param path  the file to execute (a path; see dmb_seccomp_find_program())
 * @return 1 static ELF, 0 dynamic ELF or not ELF (a script's interpreter
 *         is what runs), -errno if the file cannot be read
 */
int dmb_seccomp_elf_is_static(const char *path);

/*
 * Resolves a program name as execvp() does (a name without '/' is looked up
 * in $PATH), so that the file examined is the one that will run.
 * @param name  argv[0] as the user gave it
 * @param buf   receives the path; @param size its size
 * @return 0, -ENOENT if not found, -ENAMETOOLONG
 */
int dmb_seccomp_find_program(const char *name, char *buf, size_t size);

/*
 * Can the supervisor work on this machine? Checks what cannot be seen
 * without trying: seccomp user notification (a container's own seccomp
 * profile, or an outer supervisor, may refuse it) and pidfd_getfd().
 * Forks a short-lived child; no side effect otherwise.
 * @param why   receives a one-line reason when it cannot (no newline)
 * @param size  size of why
 * @return 0 if it works, -errno otherwise
 */
int dmb_seccomp_available(char *why, size_t size);

/*
 * Runs argv[0] (looked up in $PATH) with argv under the supervisor and
 * serves its notifications, and those of every process it starts, until
 * the last of them is gone. SIGINT, SIGTERM, SIGHUP and SIGQUIT received by
 * the supervisor are forwarded to the program. The emulation core's state
 * (the libdmabuf context exporting the program's buffers) lives in this
 * process; call it before making any context.
 * @param argv  NULL-terminated; argv[0] is the program
 * @return the program's exit status (0-255), 128 + signal if it was
 *         killed, 127 if it could not be executed, 126 if the supervisor
 *         could not start (a line on stderr says why)
 */
int dmb_seccomp_run(char *const argv[]);
