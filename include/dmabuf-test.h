/* SPDX-License-Identifier: MIT */
/**
 * @file dmabuf-test.h
 * libdmabuf-test: a test kit for programs that use libdmabuf in their own
 * tests (docs/testing.md). Link with `pkg-config --libs libdmabuf-test`.
 *
 * - A ready exporter (struct dmabuf_test_exporter) whose ops count their
 *   calls and can be told to refuse, to fail one call, or to be slow.
 * - Device presets: an IOMMU GPU, a 32-bit display controller that needs
 *   contiguous memory, a scatter-gather camera.
 * - Leak checks over dmabuf_ctx_for_each_live(), with a report that names
 *   each object, and a dmabuf_ctx_destroy() that settles and reports first.
 * - An fd-leak fixture for plain C tests (begin/end) and for CMocka
 *   (setup/teardown functions of CMocka's signature; this header does not
 *   need CMocka, and the library does not link it).
 *
 * Fault injection of the library's system calls is in dmabuf.h
 * (dmabuf_fault_inject()), as is dmabuf_ctx_settle(). The conventions of
 * dmabuf.h apply: negative errno returns, out-parameters untouched on
 * failure. Errno arguments of this kit (err) are positive, as errno is.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "dmabuf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/** @defgroup test_exporter Test kit: a counting exporter with failure knobs */
/* ------------------------------------------------------------------------ */

/** The exporter ops of struct dmabuf_ops, as the kit counts them. */
enum dmabuf_test_op {
	DMABUF_TEST_OP_ATTACH = 0,	/**< ops->attach (may fail) */
	DMABUF_TEST_OP_DETACH = 1,	/**< ops->detach */
	DMABUF_TEST_OP_MAP = 2,		/**< ops->map (may fail) */
	DMABUF_TEST_OP_UNMAP = 3,	/**< ops->unmap */
	DMABUF_TEST_OP_BEGIN_CPU_ACCESS = 4, /**< ops->begin_cpu_access (may fail) */
	DMABUF_TEST_OP_END_CPU_ACCESS = 5, /**< ops->end_cpu_access (may fail) */
	DMABUF_TEST_OP_MMAP = 6,	/**< ops->mmap (may fail) */
	DMABUF_TEST_OP_VMAP = 7,	/**< ops->vmap (may fail) */
	DMABUF_TEST_OP_VUNMAP = 8,	/**< ops->vunmap */
	DMABUF_TEST_OP_PIN = 9,		/**< ops->pin (may fail; pinning exporters) */
	DMABUF_TEST_OP_UNPIN = 10,	/**< ops->unpin (pinning exporters) */
	DMABUF_TEST_OP_RELEASE = 11,	/**< ops->release */
	DMABUF_TEST_OP_COUNT = 12,	/**< number of ops above */
};

/** Flags of dmabuf_test_exporter_new(). */
enum dmabuf_test_exporter_flags {
	/** A pinning (dynamic) exporter: its ops have pin and unpin, and no
	 * CPU access brackets. */
	DMABUF_TEST_EXPORTER_PIN = 1u << 0,
};

/** A test exporter: one ops table, counters and knobs, for any number of
 * buffers in any number of contexts (opaque). */
struct dmabuf_test_exporter;

/**
 * Creates a test exporter. Its ops do what a simple exporter does (attach
 * checks the device with dmabuf_backing_check_device(), map uses
 * dmabuf_backing_map(), vmap dmabuf_backing_vmap(), mmap allows the
 * mapping) and count every call. Counters and knobs may be used from any
 * thread.
 *
 * @param name exporter name of its buffers (copied; NULL: "test")
 * @param flags bitwise OR of enum dmabuf_test_exporter_flags
 * @param[out] out the exporter, owned by the caller until
 *        dmabuf_test_exporter_destroy()
 * @return 0; -EINVAL for a NULL out or unknown flags; -ENOMEM
 */
int dmabuf_test_exporter_new(const char *name, uint32_t flags,
			     struct dmabuf_test_exporter **out);

/**
 * Destroys a test exporter.
 *
 * @param tx the exporter, or NULL (no-op)
 * @return 0; -EBUSY while a buffer it exported is not released yet (the
 *         exporter is kept: settle, put or destroy the context first)
 */
int dmabuf_test_exporter_destroy(struct dmabuf_test_exporter *tx);

/**
 * Exports a buffer with the exporter's ops, as dmabuf_export().
 *
 * @param tx the exporter (its buffers' priv)
 * @param ctx the context to export in
 * @param size size in bytes, a non-zero page multiple
 * @param flags O_RDWR or O_RDONLY, optionally O_CLOEXEC
 * @param alloc backing allocation policy
 * @param[out] out the buffer, with one reference for the caller
 * @return 0; -EINVAL for a NULL tx; the errnos of dmabuf_export()
 */
int dmabuf_test_exporter_export(struct dmabuf_test_exporter *tx,
				struct dmabuf_ctx *ctx, uint64_t size, int flags,
				enum dmabuf_alloc alloc, struct dmabuf **out);

/**
 * @param tx the exporter
 * @param op which op
 * @return how often @p op was called on the exporter's buffers since it
 *         was made or its counts were reset (a refused or failed call
 *         included); 0 for a NULL tx or an unknown op
 */
unsigned int dmabuf_test_exporter_get_count(const struct dmabuf_test_exporter *tx,
					    enum dmabuf_test_op op);

/**
 * @param tx the exporter
 * @return how many of its buffers are exported and not released yet; 0 for
 *         a NULL tx
 */
unsigned int dmabuf_test_exporter_get_live(const struct dmabuf_test_exporter *tx);

/**
 * @param tx the exporter
 * @return the direction of the last map call; DMABUF_NONE before the first
 *         or for a NULL tx
 */
enum dmabuf_direction dmabuf_test_exporter_get_last_direction(const struct dmabuf_test_exporter *tx);

/**
 * Sets every call count to 0 (the number of live buffers is kept).
 *
 * @param tx the exporter (NULL: no-op)
 */
void dmabuf_test_exporter_reset_counts(struct dmabuf_test_exporter *tx);

/**
 * Makes every call of @p op fail with -@p err until called again with 0.
 * The call is still counted.
 *
 * @param tx the exporter
 * @param op an op that can fail: attach, map, begin/end CPU access, mmap,
 *        vmap or pin
 * @param err errno to fail with (> 0), or 0 to accept again
 * @return 0; -EINVAL for a NULL tx, an op that cannot fail, or err < 0
 */
int dmabuf_test_exporter_refuse(struct dmabuf_test_exporter *tx,
				enum dmabuf_test_op op, int err);

/**
 * Makes the @p nth next call of @p op (1: the very next) fail with -@p err,
 * once. Independent of dmabuf_test_exporter_refuse(); a call both would
 * fail fails with this one's errno.
 *
 * @param tx the exporter
 * @param op an op that can fail (as for dmabuf_test_exporter_refuse())
 * @param nth 1 for the next call, 2 for the one after, ...; 0 disarms
 * @param err errno to fail with, > 0 (ignored when nth is 0)
 * @return 0; -EINVAL for a NULL tx, an op that cannot fail, or err <= 0
 *         with nth > 0
 */
int dmabuf_test_exporter_fail_nth(struct dmabuf_test_exporter *tx,
				  enum dmabuf_test_op op, unsigned int nth, int err);

/**
 * Makes every call of @p op sleep @p delay_us microseconds before it does
 * its work (a slow exporter: a peer waiting for it, a lock held longer).
 * The op runs with the context lock held, as every op does.
 *
 * @param tx the exporter
 * @param op any op
 * @param delay_us the delay, 0 for none; at most 10 s (10000000)
 * @return 0; -EINVAL for a NULL tx, an unknown op or a longer delay
 */
int dmabuf_test_exporter_set_delay(struct dmabuf_test_exporter *tx,
				   enum dmabuf_test_op op, unsigned int delay_us);

/* ------------------------------------------------------------------------ */
/** @defgroup test_devices Test kit: device presets                          */
/* ------------------------------------------------------------------------ */

/** Typical devices, as struct dmabuf_device_info describes them. */
enum dmabuf_test_device_preset {
	/** A GPU behind an IOMMU: 48-bit DMA mask, peer-to-peer capable,
	 * segments up to 4 GiB - 4 KiB. Maps any backing. */
	DMABUF_TEST_DEVICE_GPU = 0,
	/** A display controller without IOMMU: 32-bit DMA mask, scans out
	 * one contiguous segment (DMABUF_DEVICE_CONTIGUOUS). Maps only
	 * contiguous backings below 4 GiB (DMABUF_ALLOC_CONTIGUOUS, or
	 * DMABUF_ALLOC_DEFERRED, which then allocates so). */
	DMABUF_TEST_DEVICE_DISPLAY = 1,
	/** A camera (capture DMA) without IOMMU: 32-bit DMA mask,
	 * scatter-gather in segments of at most 64 KiB. Maps backings below
	 * 4 GiB: DMABUF_ALLOC_DEFERRED places them there, a system
	 * allocation of a large context may not be (attach is -EBUSY). */
	DMABUF_TEST_DEVICE_CAMERA = 2,
	/** Number of presets above. */
	DMABUF_TEST_DEVICE_PRESET_COUNT = 3,
};

/**
 * Fills @p info with a preset's constraints; the caller may change fields
 * before dmabuf_device_new().
 *
 * @param preset which device
 * @param[out] info filled (info->name is the preset's static name: "gpu",
 *        "display" or "camera"); struct_size is set to DMABUF_STRUCT_V1
 * @return 0; -EINVAL for an unknown preset or NULL info
 */
int dmabuf_test_device_get_preset(enum dmabuf_test_device_preset preset,
				  struct dmabuf_device_info *info);

/**
 * Creates a device of a preset, as dmabuf_device_new().
 *
 * @param ctx the context
 * @param preset which device
 * @param name the device's name (copied), or NULL for the preset's
 * @param[out] out the device, owned by the caller until
 *        dmabuf_device_destroy() or dmabuf_ctx_destroy()
 * @return 0; -EINVAL for an unknown preset; the errnos of
 *         dmabuf_device_new()
 */
int dmabuf_test_device_new(struct dmabuf_ctx *ctx,
			   enum dmabuf_test_device_preset preset,
			   const char *name, struct dmabuf_device **out);

/* ------------------------------------------------------------------------ */
/** @defgroup test_leaks Test kit: leak assertions                           */
/* ------------------------------------------------------------------------ */

/** Which live objects dmabuf_test_leaks() counts (bit per
 * enum dmabuf_live_type). */
enum dmabuf_test_leak_mask {
	/** Referenced buffers and undestroyed devices: what
	 * dmabuf_ctx_destroy() reports as leaks. */
	DMABUF_TEST_LEAKS_DESTROY = (1u << DMABUF_LIVE_BUFFER) | (1u << DMABUF_LIVE_DEVICE),
	/** Everything: also attachments, mappings and buffers whose file
	 * is still open somewhere (an fd or mapping the test kept). */
	DMABUF_TEST_LEAKS_ALL = (1u << DMABUF_LIVE_BUFFER) | (1u << DMABUF_LIVE_BUFFER_FILE) |
				(1u << DMABUF_LIVE_DEVICE) | (1u << DMABUF_LIVE_ATTACHMENT) |
				(1u << DMABUF_LIVE_MAPPING),
};

/**
 * Settles @p ctx (dmabuf_ctx_settle(), bounded by 5 s) and counts its live
 * objects of the kinds in @p mask, describing each in @p report: one line
 * per object, such as `buffer test "frame" (ino 1234, 4096 bytes, 1
 * reference)`.
 *
 * @param ctx the context
 * @param mask bitwise OR of enum dmabuf_test_leak_mask, or of
 *        (1u << enum dmabuf_live_type)
 * @param[out] report the lines, NUL-terminated and cut to @p report_size;
 *        NULL for none
 * @param report_size size of @p report
 * @return the number of such objects (0: no leak); -EINVAL for a bad
 *         context or a mask of no known type; -ETIMEDOUT when the context
 *         did not settle
 */
int dmabuf_test_leaks(struct dmabuf_ctx *ctx, uint32_t mask, char *report,
		      size_t report_size);

/**
 * dmabuf_ctx_destroy() that settles first and reports what leaked
 * (DMABUF_TEST_LEAKS_ALL) in @p report before it destroys the context.
 *
 * @param ctx the context, or NULL (returns 0)
 * @param[out] report as for dmabuf_test_leaks(), or NULL
 * @param report_size size of @p report
 * @return the number of live objects found before destruction (0: clean);
 *         -EINVAL for a bad context (nothing destroyed)
 */
int dmabuf_test_ctx_destroy(struct dmabuf_ctx *ctx, char *report,
			    size_t report_size);

/* ------------------------------------------------------------------------ */
/** @defgroup test_fds Test kit: the fd-leak fixture                         */
/* ------------------------------------------------------------------------ */

/** A recorded set of open fds (opaque). */
struct dmabuf_test_fds;

/**
 * Records the fds open in this process now (from /proc/self/fd).
 *
 * @param[out] out the record, owned by the caller until
 *        dmabuf_test_fds_end()
 * @return 0; -EINVAL for NULL out; -ENOMEM; -errno of opening /proc/self/fd
 */
int dmabuf_test_fds_begin(struct dmabuf_test_fds **out);

/**
 * Compares the open fds with a record and frees the record.
 *
 * @param rec the record of dmabuf_test_fds_begin() (freed, even on error)
 * @param[out] leaked the numbers of fds opened since and still open, at
 *        most @p max of them; NULL for none
 * @param max size of @p leaked
 * @param[out] report one line per difference: an fd opened and not closed,
 *        with what it refers to (`fd 7 -> /memfd:dmabuf (deleted)`), and an
 *        fd open at the record and closed since; NUL-terminated, cut to
 *        @p report_size; NULL for none
 * @param report_size size of @p report
 * @return the number of differences (0: none); -EINVAL for a NULL rec;
 *         -errno of opening /proc/self/fd
 */
int dmabuf_test_fds_end(struct dmabuf_test_fds *rec, int *leaked,
			unsigned int max, char *report, size_t report_size);

/**
 * CMocka group or test setup (CMocka's CMUnitTestFunction signature):
 * records the open fds in a process-wide record, as
 * dmabuf_test_fds_begin(). Use as
 * `cmocka_unit_test_setup_teardown(test, dmabuf_test_fd_setup,
 * dmabuf_test_fd_teardown)`.
 *
 * @param state CMocka's state (not used)
 * @return 0; -1 when the fds cannot be listed
 */
int dmabuf_test_fd_setup(void **state);

/**
 * CMocka teardown: compares with the record of dmabuf_test_fd_setup(),
 * prints each difference to stderr, and fails the test (CMocka counts a
 * non-zero teardown as a failure of the test it wraps).
 *
 * @param state CMocka's state (not used)
 * @return 0 when the fds are as recorded; -1 otherwise, or without a record
 */
int dmabuf_test_fd_teardown(void **state);

#ifdef __cplusplus
}
#endif
