/* SPDX-License-Identifier: MIT */
/**
 * @file dmabuf-scm.h
 * Passing a buffer fd (or any fd) to another process over a connected
 * AF_UNIX socket of your own, with a small payload of your own.
 *
 * libdmabuf's exporter/importer connection does this internally; these two
 * helpers are for applications that carry buffers on their own sockets
 * (a compositor protocol, a pipeline's control channel) and want the same
 * hygiene: received fds are close-on-exec, no fd is ever left open behind
 * an error, a closed peer is an errno and never a SIGPIPE.
 *
 * Conventions are those of dmabuf.h: 0 or a negative errno; the fd you send
 * is borrowed; the fd you receive is new, O_CLOEXEC and yours to close.
 *
 * Framing: every message is an 8-byte frame header (little-endian u32 magic
 * 0x46424d44 "DMBF", u16 payload length, u8 fd count 0 or 1, u8 zero)
 * followed by the payload, with the fd attached to the header's first
 * byte. On SOCK_SEQPACKET and SOCK_DGRAM a message is one packet. On
 * SOCK_STREAM the length in the header keeps payload boundaries: one
 * dmabuf_recv_fd() returns exactly what one dmabuf_send_fd() sent, however
 * the kernel split or merged the bytes. Both ends must use these helpers
 * for the messages they exchange this way.
 */
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Largest payload of one message, in bytes. */
#define DMABUF_SCM_MAX_PAYLOAD 4096

/**
 * Sends @p fd and @p len bytes of @p payload as one message.
 *
 * On a non-blocking socket the call fails with -EAGAIN only when nothing
 * was sent; once the first byte of a message is out, it waits (poll) until
 * the whole message is out, so a stream never carries half a message.
 *
 * @param sock a connected AF_UNIX socket (SOCK_STREAM, SOCK_SEQPACKET or
 *        SOCK_DGRAM)
 * @param fd the fd to pass, borrowed (the receiver gets a new fd of the
 *        same open file description); -1 to send the payload alone
 * @param payload @p len bytes, may be NULL when @p len is 0
 * @param len 0..DMABUF_SCM_MAX_PAYLOAD
 * @return 0; -EINVAL for len over DMABUF_SCM_MAX_PAYLOAD, NULL payload with
 *         len > 0, or fd < -1; -EBADF for an fd that is not open;
 *         -ENOTSOCK; -EAGAIN (non-blocking, nothing sent); -EPIPE or
 *         -ECONNRESET when the peer has closed (no SIGPIPE is raised);
 *         another errno from sendmsg
 */
int dmabuf_send_fd(int sock, int fd, const void *payload, size_t len);

/**
 * Receives one message sent with dmabuf_send_fd().
 *
 * @param sock a connected AF_UNIX socket, as for dmabuf_send_fd()
 * @param[out] fd the received fd (new, O_CLOEXEC, owned by the caller), or
 *        -1 when the message carried none
 * @param payload buffer for the payload; may be NULL when @p cap is 0
 * @param cap size of @p payload
 * @param[out] len payload bytes received; may be NULL
 * @return 0; on failure @p fd and @p len are untouched and no fd stays
 *         open: -EINVAL for NULL @p fd or NULL payload with cap > 0;
 *         -EAGAIN (non-blocking socket, no message pending); -ECONNRESET
 *         when the peer has closed (also in the middle of a message);
 *         -EMSGSIZE when the payload is larger than @p cap (the message is
 *         consumed and its fd closed); -EPROTO for data that is not a
 *         message of dmabuf_send_fd() or that carries more than one fd
 *         (on SOCK_STREAM the stream is then out of step: close it);
 *         -EMFILE (or -ENFILE) when the message carried an fd and this
 *         process is at RLIMIT_NOFILE: the kernel could not install it, the
 *         message is consumed and the stream stays in step, so the next
 *         call works once fds are free again;
 *         -ENOTSOCK; another errno from recvmsg
 *
 * A non-blocking SOCK_STREAM socket returns -EAGAIN only before the first
 * byte of a message; after it, the call waits (poll) for the rest.
 */
int dmabuf_recv_fd(int sock, int *fd, void *payload, size_t cap, size_t *len);

#ifdef __cplusplus
}
#endif
