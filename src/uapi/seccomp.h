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

/*
 * dmabuf-run's hook (tools/dmabuf-run.c) for a program that needs the
 * supervisor: dmb_seccomp_run() if dmb_seccomp_available(), otherwise one
 * line on stderr saying why, and the program is exec'd without emulation.
 * @param argv  NULL-terminated; argv[0] is the program
 * @return the exit status to exit with (see dmb_seccomp_run())
 */
int dmb_run_supervised(char **argv);
