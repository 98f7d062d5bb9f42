/* SPDX-License-Identifier: MIT */
/*
 * What the remote layer offers the core: the hooks through which buffer.c and
 * buffer_sync.c reach the endpoint and the proxies without naming them, so
 * every call edge between the layers points down.
 */
#include "remote.h"

static int endpoint_name(struct dmabuf_ctx *ctx, const char **name)
{
	int ret = dmb_endpoint_ensure(ctx);

	if (ret == 0)
		*name = ctx->endpoint->name;
	return ret;
}

static const struct dmb_remote_hooks remote_hooks = {
	.endpoint_name = endpoint_name,
	.import = dmb_import,
	.describe = dmb_proxy_describe,
	.set_name = dmb_proxy_set_name,
	.export_sync_file = dmb_proxy_export_sync_file,
	.import_sync_file = dmb_proxy_import_sync_file,
	.maps_announced = dmb_map_state_announced,
	.map_state_changed = dmb_map_state_changed,
	.publish = dmb_prepub_publish,
	.released = dmb_prepub_released,
};

void dmb_remote_register(void)
{
	dmb_remote_set_hooks(&remote_hooks);
}
