/* SPDX-License-Identifier: MIT */
#include <stdatomic.h>

#include "sys.h"

static atomic_uint countdown[DMB_SYS__COUNT];
static int inject_errno[DMB_SYS__COUNT];
static atomic_uint armed;

int dmb_sys_fail(enum dmb_sys_call call)
{
	if (!atomic_load_explicit(&armed, memory_order_relaxed))
		return 0;
	unsigned int left = atomic_load(&countdown[call]);
	while (left > 0) {
		if (atomic_compare_exchange_weak(&countdown[call], &left, left - 1)) {
			if (left == 1) {
				atomic_fetch_sub(&armed, 1);
				return inject_errno[call];
			}
			return 0;
		}
	}
	return 0;
}

void dmb_sys_inject(enum dmb_sys_call call, unsigned int nth, int err)
{
	unsigned int old = atomic_exchange(&countdown[call], nth);

	inject_errno[call] = err;
	if (old && !nth)
		atomic_fetch_sub(&armed, 1);
	else if (!old && nth)
		atomic_fetch_add(&armed, 1);
}
