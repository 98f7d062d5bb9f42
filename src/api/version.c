/* SPDX-License-Identifier: MIT */
/* The library's version at run time (include/dmabuf-version.h at build). */
#include "base.h"

DMABUF_EXPORT unsigned int dmabuf_version(void)
{
	return DMABUF_VERSION;
}
