/* SPDX-License-Identifier: MIT */
/* placeholder: being written (fences, reservation objects, sync files) */
#pragma once
#include "dmabuf.h"
