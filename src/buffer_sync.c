/* SPDX-License-Identifier: MIT */
/* Buffers and fences: implicit synchronisation through the reservation
 * object. */
#include "private.h"

int dmb_buf_wait_for_cpu(struct dmabuf *buf, bool write)
{
	/* Until reservation objects exist a buffer has no fences. */
	return 0;
}
