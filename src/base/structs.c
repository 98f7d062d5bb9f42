/* SPDX-License-Identifier: MIT */
/*
 * Versioned public structs: the size-compatible copy the kernel's ioctls do
 * (copy_struct_from_user()), so old and new callers both work.
 */
#include <string.h>

#include "base.h"

static size_t caller_size(const void *s, size_t v1_size)
{
	uint32_t size;

	memcpy(&size, s, sizeof(size));
	return size ? size : v1_size;
}

int dmb_struct_in(void *dst, size_t dst_size, const void *src, size_t v1_size)
{
	size_t size = caller_size(src, v1_size);
	const unsigned char *extra = (const unsigned char *)src + dst_size;

	if (size < sizeof(uint32_t))
		return -EINVAL;
	for (size_t i = dst_size; i < size; i++, extra++)
		if (*extra)
			return -E2BIG;
	memset(dst, 0, dst_size);
	memcpy(dst, src, size < dst_size ? size : dst_size);
	*(uint32_t *)dst = (uint32_t)dst_size;
	return 0;
}

int dmb_struct_out(void *dst, const void *src, size_t src_size, size_t v1_size)
{
	size_t size = caller_size(dst, v1_size);
	uint32_t keep;

	if (size < sizeof(uint32_t))
		return -EINVAL;
	memcpy(&keep, dst, sizeof(keep));
	memcpy(dst, src, size < src_size ? size : src_size);
	memcpy(dst, &keep, sizeof(keep));
	return 0;
}
