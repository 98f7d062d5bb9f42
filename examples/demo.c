/* SPDX-License-Identifier: MIT */
/*
 * dmabuf-demo: a camera shares its frames with an encoder and a display,
 * each in its own process, the way a Linux media pipeline uses dma-buf.
 *
 *            fd + "frame n, 1280x720"                 (unix sockets,
 *   camera ---------------------------> encoder        SCM_RIGHTS)
 *      |   \--------------------------> display
 *      |
 *      +-- exporter: owns the buffers, answers the importers' attach, map
 *          and fence requests from its service thread
 *
 * Per frame:
 *   camera   allocates a buffer from a heap, opens a CPU write bracket,
 *            attaches a *write fence* ("being written") to the buffer and
 *            sends the fd to both consumers at once, then writes the pixels
 *            slice by slice and signals the fence.
 *   encoder  imports the fd (dmabuf_get), attaches its device (behind an
 *   display  IOMMU / no IOMMU, 32-bit, contiguous), waits for the write
 *            fence through the buffer, maps it, reads the pixels with
 *            (simulated) device DMA and checks them. The encoder also writes
 *            a checksum into the frame's last page by DMA, under a write
 *            fence of its own, which the camera waits for before reading it.
 *   all      unmap, detach, put, close: the exporter's release runs once
 *            nobody holds the buffer any more.
 *
 * Then one move: the camera shares a buffer with the encoder, which
 * attaches as a *dynamic* importer (dmabuf_dynamic_attach()); the camera
 * migrates the buffer to other pages (as a driver evicts or restores to
 * VRAM), the encoder hears of it through move_notify (a MOVE_NOTIFY event
 * from the camera's process), drops its stale mapping and maps the new
 * placement.
 *
 * Options: --frames N (default 4) and --fps N, which paces the camera and
 * keeps each frame on the display (attached and mapped) for 1/N s, slow
 * enough to watch the buffers with tools/dmabuf-ls.
 *
 * The main process only forks the three, watches them with a deadline and
 * kills the others if one fails. Every wait in the demo is bounded.
 *
 * Error handling is fail-fast: a failed check prints what failed and the
 * process exits 1; the main process then prints "demo: FAILED: ..." and
 * exits non-zero.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dmabuf-fence.h>
#include <dmabuf-scm.h>
#include <dmabuf.h>

/* ------------------------------------------------------------------------ */
/* Parameters                                                               */
/* ------------------------------------------------------------------------ */

#define NFRAMES_DEFAULT 4
#define NFRAMES_MAX 100000
#define FPS_MAX 1000
#define MAX_IN_FLIGHT 3		/* frames the camera has out at once */
#define WIDTH 1280
#define HEIGHT 720
#define STRIDE (WIDTH * 4)	/* XRGB8888 */
#define PIXEL_BYTES ((uint64_t)STRIDE * HEIGHT)	/* 3.5 MiB */
#define FRAME_SIZE (4ull << 20)	/* buffer: pixels, then a spare area */
#define RESULT_OFFSET (FRAME_SIZE - 4096)	/* encoder's result, last page */
#define RESULT_MAGIC 0x31434e45u	/* "ENC1" */
#define HEAP "deferred"
#define SLICES 8		/* the sensor delivers a frame in 8 slices, */
#define SLICE_MS 1		/* one per millisecond */
#define WAIT_MS_BASE 5000	/* bound of any single wait in a process */
#define FRAMES_DEADLINE_MS 20000 /* the camera gives up on its frames then, */
#define FRAME_BUDGET_MS 50	/* plus this much per frame, plus the pacing */
#define DEMO_GRACE_MS 10000	/* the main process kills everything this late */

/* --frames N and --fps N (0: as fast as the pipeline goes). */
static uint32_t nframes = NFRAMES_DEFAULT;
static uint32_t fps;

/* When the camera gives up: generous, and longer for a long or slow run.
 * Under valgrind (meson test --setup valgrind sets DMABUF_UNDER_VALGRIND)
 * everything runs about 5 times slower, as meson's timeout_multiplier. */
static double frames_deadline_ms(void)
{
	double slow = getenv("DMABUF_UNDER_VALGRIND") ? 5 : 1;

	return slow * (FRAMES_DEADLINE_MS + (double)nframes * FRAME_BUDGET_MS) +
	       (fps ? (double)nframes * 1000.0 / fps : 0);
}

/* The bound of any single wait, 5 times longer under valgrind too: a
 * consumer's first wait covers the camera's start, which valgrind on a busy
 * machine can stretch past 5 s. */
static int wait_ms(void)
{
	return getenv("DMABUF_UNDER_VALGRIND") ? 5 * WAIT_MS_BASE : WAIT_MS_BASE;
}
#define WAIT_MS wait_ms()

/* ------------------------------------------------------------------------ */
/* Trace: one line per step, "[  time ] process : what happened"            */
/* ------------------------------------------------------------------------ */

static struct timespec demo_start; /* set before fork: shared time origin */
static const char *who = "demo";

static double ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* One write() per line: lines of different processes never mix. */
__attribute__((format(printf, 1, 2))) static void trace(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "[%7.1f ms] %-7s : ", ms_since(&demo_start), who);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
		/* nothing sensible to do: the verdict is the exit code */
	}
}

/* Fail fast: report and leave with status 1 (the main process notices). */
__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	trace("FAILED: %s", msg);
	_exit(EXIT_FAILURE);
}

/* For calls returning 0 / a count / an fd, or a negative errno. */
#define CHECK(expr)                                                             \
	({                                                                      \
		int _r = (expr);                                                \
		if (_r < 0)                                                     \
			fail("%s = %d (%s)", #expr, _r, strerror(-_r));         \
		_r;                                                             \
	})

/* ------------------------------------------------------------------------ */
/* The picture and the messages on the sockets                              */
/* ------------------------------------------------------------------------ */

/* XRGB8888 test pattern; it differs per frame, so a stale or mixed-up
 * frame is caught. */
static uint32_t pixel(uint32_t frame, uint32_t x, uint32_t y)
{
	return 0xff000000u | ((x + frame * 40) & 0xff) << 16 | (y & 0xff) << 8 |
	       (((x ^ y) + frame) & 0xff);
}

/* FNV-1a over 32-bit words, in memory order. */
#define CHECKSUM_INIT 2166136261u
static uint32_t checksum_step(uint32_t h, uint32_t word)
{
	return (h ^ word) * 16777619u;
}

/* Checks a frame's pixels; returns the number of wrong ones. */
static uint64_t verify_pixels(uint32_t frame, const uint32_t *px, uint32_t *checksum)
{
	uint64_t bad = 0;
	uint32_t h = CHECKSUM_INIT;

	for (uint32_t y = 0; y < HEIGHT; y++)
		for (uint32_t x = 0; x < WIDTH; x++) {
			uint32_t v = px[y * WIDTH + x];

			bad += v != pixel(frame, x, y);
			h = checksum_step(h, v);
		}
	if (checksum)
		*checksum = h;
	return bad;
}

/* What the encoder writes into the frame's last page. */
struct enc_result {
	uint32_t magic;
	uint32_t frame;
	uint32_t checksum;
	uint32_t bad_pixels;
};

enum msg_type {
	MSG_FRAME = 1,	/* camera -> consumer, with the buffer fd */
	MSG_ATTACHED,	/* consumer -> camera: my device is attached */
	MSG_MAP,	/* camera -> consumer: every device attached, map now */
	MSG_DONE,	/* consumer -> camera: finished, everything released */
	MSG_MOVE,	/* camera -> encoder, with an fd: the move step */
	MSG_MOVED,	/* camera -> encoder: the buffer moved */
};

struct msg {
	uint32_t type;
	uint32_t frame;
	uint32_t width, height, stride;
	uint32_t ok;		/* DONE: 1 if the pixels matched */
	char heap[16];		/* FRAME: which heap the buffer came from */
};

static const char *msg_name(uint32_t type)
{
	static const char *const names[] = { "?", "FRAME", "ATTACHED", "MAP", "DONE", "MOVE",
					     "MOVED" };

	return type < 7 ? names[type] : "?";
}

static void send_msg(int sock, const struct msg *m, int fd)
{
	CHECK(dmabuf_send_fd(sock, fd, m, sizeof(*m)));
}

/* Receives one message within timeout_ms. Returns 0, or -ETIMEDOUT, or the
 * negative errno of dmabuf_recv_fd() (-ECONNRESET: the peer is gone). */
static int recv_msg(int sock, struct msg *m, int *fd, int timeout_ms)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	size_t len = 0;
	int ret;

	ret = poll(&p, 1, timeout_ms);
	if (ret < 0)
		return -errno;
	if (ret == 0)
		return -ETIMEDOUT;
	ret = dmabuf_recv_fd(sock, fd, m, sizeof(*m), &len);
	if (ret == 0 && len != sizeof(*m)) {
		if (*fd >= 0)
			close(*fd);
		return -EPROTO;
	}
	return ret;
}

/* ------------------------------------------------------------------------ */
/* The camera: exporter of every frame                                      */
/* ------------------------------------------------------------------------ */

enum { ENCODER = 0, DISPLAY = 1, NCONSUMERS = 2 };
static const char *const consumer_name[NCONSUMERS] = { "encoder", "display" };

struct frame {
	uint32_t n;
	int fd;			/* the dma-buf fd from the heap */
	struct dmabuf *buf;	/* the camera's handle (a reference) */
	uint8_t *cpu;		/* CPU mapping (dmabuf_mmap) */
	struct dmabuf_fence *write_fence;
	uint32_t rows_written;
	uint32_t checksum;	/* of what the camera wrote */
	unsigned int attached, done; /* bit per consumer */
};

struct camera {
	struct dmabuf_ctx *ctx;
	struct dmabuf_timeline *timeline; /* the camera's write fences */
	int sock[NCONSUMERS];
	struct frame *frames;	/* nframes + 1; index = frame number */
	unsigned int consumer_done[NCONSUMERS]; /* frames each one finished */
	unsigned int in_flight, finished;
	uint64_t released_seen;
};

static void camera_start_frame(struct camera *cam, struct frame *f)
{
	struct msg m = { .type = MSG_FRAME, .frame = f->n, .width = WIDTH,
			 .height = HEIGHT, .stride = STRIDE, .heap = HEAP };
	char name[DMABUF_NAME_LEN];
	int sync_fd;

	/* A dma-heap allocation: the result is nothing but an fd. */
	f->fd = CHECK(dmabuf_heap_alloc(cam->ctx, HEAP, FRAME_SIZE, O_RDWR | O_CLOEXEC, 0));
	trace("frame %u: allocated %llu MiB from heap '%s' -> dma-buf fd %d (no pages chosen yet)",
	      f->n, FRAME_SIZE >> 20, HEAP, f->fd);
	/* Our own handle on it, to map it and manage its fences. */
	CHECK(dmabuf_get(cam->ctx, f->fd, &f->buf));
	snprintf(name, sizeof(name), "camera-frame-%u", f->n);
	CHECK(dmabuf_set_name(f->buf, name));
	CHECK(dmabuf_mmap(f->buf, 0, FRAME_SIZE, PROT_READ | PROT_WRITE, (void **)&f->cpu));

	/* begin_cpu_access(write) waits for every fence on the buffer, so it
	 * comes before we publish our own write fence: else we would wait
	 * for ourselves. The context is strict: outside the bracket the
	 * mapping is PROT_NONE. */
	CHECK(dmabuf_begin_cpu_access(f->buf, DMABUF_TO_DEVICE));
	trace("frame %u: begin_cpu_access(write): mapped, nothing to wait for, the CPU owns it now",
	      f->n);

	/* The write fence: a point on the camera's timeline, turned into a
	 * sync file and attached to the buffer's reservation object as a
	 * writer. Importers find it through the buffer itself. */
	CHECK(dmabuf_timeline_create_fence(cam->timeline, f->n, &f->write_fence));
	sync_fd = CHECK(dmabuf_sync_file_export(f->write_fence));
	CHECK(dmabuf_import_sync_file(f->buf, DMABUF_SYNC_WRITE, sync_fd));
	close(sync_fd);
	trace("frame %u: write fence camera#%u attached to the buffer: \"being written\"", f->n, f->n);

	/* Hand the frame out now: the fence, not the timing, keeps readers
	 * off the pixels until they are complete. */
	for (int c = 0; c < NCONSUMERS; c++)
		send_msg(cam->sock[c], &m, f->fd);
	trace("frame %u: sent the fd to encoder and display (%ux%u XRGB8888, stride %u)",
	      f->n, WIDTH, HEIGHT, STRIDE);
	f->checksum = CHECKSUM_INIT;
	cam->in_flight++;
}

/* The sensor delivers one slice of rows; the last slice completes the
 * frame: end the CPU access and signal the write fence. Returns true then. */
static bool camera_write_slice(struct camera *cam, struct frame *f)
{
	uint32_t *px = (uint32_t *)f->cpu;
	uint32_t end = f->rows_written + HEIGHT / SLICES;

	for (uint32_t y = f->rows_written; y < end; y++)
		for (uint32_t x = 0; x < WIDTH; x++) {
			px[y * WIDTH + x] = pixel(f->n, x, y);
			f->checksum = checksum_step(f->checksum, px[y * WIDTH + x]);
		}
	f->rows_written = end;
	if (end < HEIGHT)
		return false;
	CHECK(dmabuf_end_cpu_access(f->buf, DMABUF_TO_DEVICE));
	trace("frame %u: %u rows written; end_cpu_access; signalling write fence camera#%u",
	      f->n, HEIGHT, f->n);
	/* The timeline reaches n: fence camera#n signals, in every process
	 * that holds it (the consumers' sync files become readable). */
	CHECK(dmabuf_timeline_inc(cam->timeline, 1));
	dmabuf_fence_put(f->write_fence);
	f->write_fence = NULL;
	return true;
}

/* The encoder is done with frame f: read its result from the frame. */
static void camera_check_encoder_result(struct frame *f)
{
	struct enc_result res;

	/* A CPU read waits for the buffer's writers: here the encoder's
	 * write fence, which travelled from the encoder's process. */
	CHECK(dmabuf_begin_cpu_access(f->buf, DMABUF_FROM_DEVICE));
	memcpy(&res, f->cpu + RESULT_OFFSET, sizeof(res));
	CHECK(dmabuf_end_cpu_access(f->buf, DMABUF_FROM_DEVICE));
	if (res.magic != RESULT_MAGIC || res.frame != f->n)
		fail("frame %u: no encoder result in the frame (magic %#x, frame %u)", f->n,
		     res.magic, res.frame);
	if (res.bad_pixels || res.checksum != f->checksum)
		fail("frame %u: encoder saw %u bad pixels, checksum %#010x (camera wrote %#010x)",
		     f->n, res.bad_pixels, res.checksum, f->checksum);
	trace("frame %u: begin_cpu_access(read) (waits for writers, i.e. the encoder's fence): "
	      "its checksum %#010x matches ours", f->n, res.checksum);
}

static void camera_finish_frame(struct camera *cam, struct frame *f)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	CHECK(dmabuf_get_info(f->buf, &info));
	if (!info.backing_allocated || !info.contiguous)
		fail("frame %u: backing allocated %d, contiguous %d: the display needed one run",
		     f->n, info.backing_allocated, info.contiguous);
	trace("frame %u: both consumers done; its pages were one contiguous run (for the display)",
	      f->n);
	CHECK(dmabuf_munmap(f->buf, f->cpu, FRAME_SIZE));
	CHECK(dmabuf_put(f->buf));
	close(f->fd);
	f->buf = NULL;
	f->fd = -1;
	trace("frame %u: camera dropped its mapping, reference and fd (release follows when "
	      "nobody holds it)", f->n);
	cam->in_flight--;
	cam->finished++;
}

static void camera_handle_msg(struct camera *cam, int c)
{
	struct msg m;
	struct frame *f;
	int fd = -1, ret;

	ret = recv_msg(cam->sock[c], &m, &fd, 0);
	if (ret == -ETIMEDOUT)
		return;
	/* A consumer that finished every frame may leave; before that, a
	 * closed socket means it died. */
	if (ret == -ECONNRESET && cam->consumer_done[c] == nframes) {
		close(cam->sock[c]);
		cam->sock[c] = -1;
		return;
	}
	if (ret < 0)
		fail("lost the %s: %s", consumer_name[c], strerror(-ret));
	if (fd >= 0)
		close(fd);
	if (m.frame < 1 || m.frame > nframes || !cam->frames[m.frame].buf)
		fail("%s sent %s for unknown frame %u", consumer_name[c], msg_name(m.type), m.frame);
	f = &cam->frames[m.frame];
	switch (m.type) {
	case MSG_ATTACHED:
		f->attached |= 1u << c;
		if (f->attached != (1u << NCONSUMERS) - 1)
			break;
		/* The deferred heap picks the pages at the first map, to suit
		 * every device attached by then: so nobody maps before both
		 * devices are attached. */
		for (int i = 0; i < NCONSUMERS; i++) {
			struct msg go = { .type = MSG_MAP, .frame = f->n };

			send_msg(cam->sock[i], &go, -1);
		}
		trace("frame %u: encoder and display both attached -> \"map now\"", f->n);
		break;
	case MSG_DONE:
		if (!m.ok)
			fail("frame %u: the %s reports bad pixels", f->n, consumer_name[c]);
		f->done |= 1u << c;
		cam->consumer_done[c]++;
		if (c == ENCODER)
			camera_check_encoder_result(f);
		if (f->done == (1u << NCONSUMERS) - 1)
			camera_finish_frame(cam, f);
		break;
	default:
		fail("unexpected %s from the %s", msg_name(m.type), consumer_name[c]);
	}
}

/* Reports ops->release calls as they happen (they run in the service
 * thread, when the last holder in any process lets go). */
static void camera_report_releases(struct camera *cam)
{
	struct dmabuf_ctx_stats st = { .struct_size = sizeof(st) };

	CHECK(dmabuf_ctx_get_stats(cam->ctx, &st));
	if (st.buffers_released != cam->released_seen) {
		trace("exporter: ops->release ran (%" PRIu64 " released so far, %" PRIu64
		      " live): no fd, reference or mapping left anywhere",
		      st.buffers_released, st.buffers_live);
		cam->released_seen = st.buffers_released;
	}
}

/* The move step: a buffer the encoder attaches to dynamically, moved to
 * other pages while it is mapped. */
#define MOVE_SIZE (64u * 4096u)
#define MOVE_TEXT "same bytes, new pages"

static void camera_move_step(struct camera *cam)
{
	struct msg m = { .type = MSG_MOVE, .frame = nframes + 1 };
	struct dmabuf_ctx_stats st = { .struct_size = sizeof(st) };
	struct dmabuf *buf;
	struct dmabuf_resv *resv;
	char *cpu;
	int fd, rfd = -1, ret;

	fd = CHECK(dmabuf_heap_alloc(cam->ctx, "system", MOVE_SIZE, O_RDWR | O_CLOEXEC, 0));
	CHECK(dmabuf_get(cam->ctx, fd, &buf));
	CHECK(dmabuf_set_name(buf, "camera-move"));
	CHECK(dmabuf_mmap(buf, 0, MOVE_SIZE, PROT_READ | PROT_WRITE, (void **)&cpu));
	CHECK(dmabuf_begin_cpu_access(buf, DMABUF_TO_DEVICE));
	strcpy(cpu, MOVE_TEXT);
	CHECK(dmabuf_end_cpu_access(buf, DMABUF_TO_DEVICE));
	send_msg(cam->sock[ENCODER], &m, fd);
	trace("move: shared a %u KiB buffer of system pages with the encoder", MOVE_SIZE >> 10);
	ret = recv_msg(cam->sock[ENCODER], &m, &rfd, WAIT_MS);
	if (ret < 0 || m.type != MSG_ATTACHED)
		fail("move: no ATTACHED from the encoder (%d)", ret);
	if (rfd >= 0)
		close(rfd);
	/* As a driver moves a buffer: under its reservation lock. The
	 * encoder's dynamic attachment does not pin it, so it may move. */
	resv = dmabuf_get_resv(buf);
	dmabuf_resv_lock(resv);
	ret = dmabuf_backing_migrate(buf, DMABUF_ALLOC_CONTIGUOUS, NULL);
	dmabuf_resv_unlock(resv);
	CHECK(ret);
	CHECK(dmabuf_ctx_get_stats(cam->ctx, &st));
	trace("move: migrated it to one contiguous run (\"VRAM\"): the encoder was sent "
	      "MOVE_NOTIFY (%" PRIu64 " importer notified)", st.move_notifies);
	send_msg(cam->sock[ENCODER], &(struct msg){ .type = MSG_MOVED, .frame = m.frame }, -1);
	ret = recv_msg(cam->sock[ENCODER], &m, &rfd, WAIT_MS);
	if (ret < 0 || m.type != MSG_DONE || !m.ok)
		fail("move: the encoder did not read the moved buffer (%d)", ret);
	if (rfd >= 0)
		close(rfd);
	trace("move: the encoder read the bytes at their new place");
	CHECK(dmabuf_munmap(buf, cpu, MOVE_SIZE));
	CHECK(dmabuf_put(buf));
	close(fd);
}

static int camera_main(int enc_sock, int disp_sock)
{
	struct dmabuf_ctx_config cfg = {
		.seed = 2024,
		/* strict: CPU access outside begin/end faults instead of
		 * silently working */
		.flags = DMABUF_CTX_STRICT_CPU_ACCESS,
		.call_timeout_ms = WAIT_MS,
	};
	struct camera cam = { .sock = { enc_sock, disp_sock } };
	struct dmabuf_ctx_stats st = { .struct_size = sizeof(st) };
	struct timespec t0;
	struct frame *writing = NULL;
	uint32_t next = 1;

	who = "camera";
	cam.frames = calloc(nframes + 1, sizeof(*cam.frames));
	if (!cam.frames)
		fail("out of memory");
	CHECK(dmabuf_ctx_new(&cfg, &cam.ctx));
	CHECK(dmabuf_timeline_new("camera", &cam.timeline));
	/* Importers call into the exporter (import, attach, map, fences):
	 * a service thread answers them while this thread produces frames. */
	CHECK(dmabuf_ctx_start_thread(cam.ctx));
	trace("exporter ready; service thread answers importers' attach/map/fence calls");

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (cam.finished < nframes) {
		struct pollfd p[NCONSUMERS];
		int ret;

		/* --fps: frame n starts no earlier than (n - 1) / fps s in */
		double due = fps ? (double)(next - 1) * 1000.0 / fps : 0;
		int pace = (int)(due - ms_since(&t0));

		if (!writing && next <= nframes && cam.in_flight < MAX_IN_FLIGHT && pace <= 0) {
			writing = &cam.frames[next];
			writing->n = next++;
			camera_start_frame(&cam, writing);
		}
		if (writing && camera_write_slice(&cam, writing))
			writing = NULL;
		/* Wait for the consumers' messages; while the sensor has
		 * work, this is also its pace (one slice per SLICE_MS). */
		bool sensor_busy = writing || (next <= nframes && cam.in_flight < MAX_IN_FLIGHT &&
					       pace <= SLICE_MS);
		int timeout = sensor_busy ? SLICE_MS : 100;

		if (!sensor_busy && next <= nframes && cam.in_flight < MAX_IN_FLIGHT &&
		    pace < timeout)
			timeout = pace;

		for (int c = 0; c < NCONSUMERS; c++)
			p[c] = (struct pollfd){ .fd = cam.sock[c], .events = POLLIN };
		ret = poll(p, NCONSUMERS, timeout);
		if (ret < 0 && errno != EINTR)
			fail("poll: %s", strerror(errno));
		for (int c = 0; c < NCONSUMERS && ret > 0; c++)
			if (p[c].revents)
				camera_handle_msg(&cam, c);
		camera_report_releases(&cam);
		if (ms_since(&t0) > frames_deadline_ms())
			fail("frames not done after %.0f ms (%u of %u finished)",
			     frames_deadline_ms(), cam.finished, nframes);
	}

	camera_move_step(&cam);

	/* Every holder has let go; the last releases may still be on their
	 * way to the service thread. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		CHECK(dmabuf_ctx_get_stats(cam.ctx, &st));
		if (st.buffers_live == 0 || ms_since(&t0) > WAIT_MS)
			break;
		poll(NULL, 0, 1);
	}
	camera_report_releases(&cam);
	trace("exporter stats: %u exported, %" PRIu64 " released, %" PRIu64 " live, %" PRIu64
	      " attachments, %" PRIu64 " mappings, %" PRIu64 " KiB of (simulated) RAM in use",
	      nframes + 1, st.buffers_released, st.buffers_live, st.attachments_live,
	      st.mappings_live, st.phys_used >> 10);
	if (st.buffers_released != nframes + 1 || st.buffers_live || st.attachments_live ||
	    st.mappings_live || st.phys_used || st.cma_used)
		fail("the exporter's buffers were not all released exactly once");
	trace("every buffer released exactly once");

	CHECK(dmabuf_ctx_stop_thread(cam.ctx));
	dmabuf_timeline_destroy(cam.timeline);
	dmabuf_ctx_destroy(cam.ctx);
	free(cam.frames);
	for (int c = 0; c < NCONSUMERS; c++)
		if (cam.sock[c] >= 0)
			close(cam.sock[c]);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The consumers: encoder and display                                       */
/* ------------------------------------------------------------------------ */

struct consumer {
	int role;
	int sock;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf_timeline *timeline; /* encoder: its write fences */
	uint32_t *pixels;		   /* what the device read */
	/* FRAME messages that arrive while we wait for a MAP */
	struct {
		struct msg m;
		int fd;
	} queue[MAX_IN_FLIGHT];
	unsigned int queued;
};

/* Next message of @type for @frame (0: any frame); frames that arrive
 * meanwhile are queued. */
static int consumer_next(struct consumer *cs, uint32_t type, uint32_t frame, struct msg *m)
{
	struct timespec t0;
	int fd = -1, ret;

	if (type == MSG_FRAME && cs->queued) {
		*m = cs->queue[0].m;
		fd = cs->queue[0].fd;
		memmove(&cs->queue[0], &cs->queue[1], --cs->queued * sizeof(cs->queue[0]));
		return fd;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		/* The camera's next message may wait for the camera's own
		 * start-up and pacing, so the bound is the camera's deadline; a
		 * camera that dies hangs up the socket (-ECONNRESET) at once. */
		int left = (int)frames_deadline_ms() - (int)ms_since(&t0);

		ret = recv_msg(cs->sock, m, &fd, left > 0 ? left : 0);
		if (ret < 0)
			fail("waiting for %s of frame %u from the camera: %s", msg_name(type), frame,
			     strerror(-ret));
		if (m->type == type && (!frame || m->frame == frame))
			return fd;
		if (m->type != MSG_FRAME || fd < 0 || cs->queued == MAX_IN_FLIGHT)
			fail("unexpected %s for frame %u", msg_name(m->type), m->frame);
		cs->queue[cs->queued].m = *m;
		cs->queue[cs->queued++].fd = fd;
	}
}

/* Waits, through the buffer, for the fences a reader must respect: the
 * writers'. DMA_BUF_IOCTL_EXPORT_SYNC_FILE(READ) asks the exporter for one
 * sync file of all its write fences; the sync file is an fd we can poll. */
static void consumer_wait_for_writer(struct consumer *cs, struct dmabuf *buf, uint32_t n)
{
	struct dmabuf_sync_fence_info fi = { 0 };
	struct timespec t0;
	int status = 0, sync_fd, ret;

	sync_fd = CHECK(dmabuf_export_sync_file(buf, DMABUF_SYNC_READ));
	CHECK(dmabuf_sync_file_info(sync_fd, &status, &fi, 1));
	if (status == 0) {
		/* Until it signals, a fence of another process is known here
		 * by its seqno and the pid that can signal it. */
		trace("frame %u: waiting for its write fence (#%" PRIu64 ", %s): the camera is "
		      "still writing ...", n, fi.seqno, fi.obj_name);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ret = CHECK(dmabuf_sync_file_wait(sync_fd, WAIT_MS));
		if (ret == 0)
			fail("frame %u: write fence not signalled after %d ms", n, WAIT_MS);
		CHECK(dmabuf_sync_file_info(sync_fd, &status, &fi, 1));
		trace("frame %u: ... write fence %s#%" PRIu64 " signalled after %.1f ms: the "
		      "pixels are complete", n, fi.obj_name, fi.seqno, ms_since(&t0));
	} else {
		trace("frame %u: write fence %s#%" PRIu64 " already signalled: the pixels are "
		      "complete", n, fi.obj_name, fi.seqno);
	}
	/* An error status means the writer failed or died mid-frame. */
	if (status != 1)
		fail("frame %u: write fence signalled with error %d (%s)", n, status,
		     strerror(-status));
	close(sync_fd);
}

/* Device address of buffer offset @off in a mapping. */
static uint64_t dma_addr_of(struct dmabuf_sg_table *sgt, uint64_t off)
{
	const struct dmabuf_dma_entry *d;
	unsigned int i;

	dmabuf_for_each_sgtable_dma_sg(sgt, d, i)
		if (off >= d->offset && off < d->offset + d->length)
			return d->dma_addr + (off - d->offset);
	fail("offset %#" PRIx64 " is not in the mapping", off);
}

/* The encoder's device: reads the picture segment by segment, as a device
 * walks its scatter list, then writes its result into the frame. */
static void encoder_process_frame(struct consumer *cs, struct dmabuf *buf,
				  struct dmabuf_sg_table *sgt, uint32_t n)
{
	const struct dmabuf_dma_entry *d;
	struct dmabuf_fence *fence;
	struct enc_result res = { .magic = RESULT_MAGIC, .frame = n };
	uint64_t covered = 0, bad;
	unsigned int i, used = 0;
	int sync_fd;

	dmabuf_for_each_sgtable_dma_sg(sgt, d, i) {
		uint64_t len;

		if (d->length > 64 * 1024)
			fail("frame %u: segment %u is %" PRIu64 " bytes, over the 64 KiB limit", n,
			     i, d->length);
		if (d->offset >= PIXEL_BYTES)
			continue;
		len = d->length < PIXEL_BYTES - d->offset ? d->length : PIXEL_BYTES - d->offset;
		CHECK(dmabuf_dma_read(cs->dev, d->dma_addr, (uint8_t *)cs->pixels + d->offset,
				      len));
		covered += len;
		used++;
	}
	if (covered != PIXEL_BYTES)
		fail("frame %u: the segments cover %" PRIu64 " of %" PRIu64 " pixel bytes", n,
		     covered, PIXEL_BYTES);
	bad = verify_pixels(n, cs->pixels, &res.checksum);
	res.bad_pixels = (uint32_t)bad;
	trace("frame %u: DMA-read the picture through %u segments: %" PRIu64 " bad pixels, "
	      "checksum %#010x", n, used, bad, res.checksum);
	if (bad)
		fail("frame %u: %" PRIu64 " pixels differ from the camera's pattern", n, bad);

	/* Writing into a shared buffer: announce it with a write fence of
	 * our own (attached through the proxy, i.e. in the camera's
	 * reservation object), write, signal. */
	CHECK(dmabuf_timeline_create_fence(cs->timeline, n, &fence));
	sync_fd = CHECK(dmabuf_sync_file_export(fence));
	CHECK(dmabuf_import_sync_file(buf, DMABUF_SYNC_WRITE, sync_fd));
	close(sync_fd);
	CHECK(dmabuf_dma_write(cs->dev, dma_addr_of(sgt, RESULT_OFFSET), &res, sizeof(res)));
	CHECK(dmabuf_timeline_inc(cs->timeline, 1));
	dmabuf_fence_put(fence);
	trace("frame %u: wrote the checksum into the frame's last page by DMA, under write "
	      "fence encoder#%u (now signalled)", n, n);
}

/* The display's device: one contiguous segment, scanned out in one go. */
static void display_process_frame(struct consumer *cs, struct dmabuf_sg_table *sgt, uint32_t n)
{
	const struct dmabuf_dma_entry *d = dmabuf_sg_table_get_dma_entries(sgt);
	uint64_t bad;

	if (dmabuf_sg_table_get_dma_count(sgt) != 1 || d->length != FRAME_SIZE ||
	    d->dma_addr + d->length > (1ull << 32))
		fail("frame %u: %u segments, first %#" PRIx64 "+%#" PRIx64
		     ": not one segment below 4 GiB", n, dmabuf_sg_table_get_dma_count(sgt),
		     d->dma_addr, d->length);
	CHECK(dmabuf_dma_read(cs->dev, d->dma_addr, cs->pixels, PIXEL_BYTES));
	bad = verify_pixels(n, cs->pixels, NULL);
	if (bad)
		fail("frame %u: scanned out %" PRIu64 " wrong pixels", n, bad);
	trace("frame %u: scanned out by DMA: all %u pixels match -> on screen", n, WIDTH * HEIGHT);
	/* --fps: the frame stays on screen (attached, mapped) for one frame
	 * period, as a display keeps its front buffer; dmabuf-ls can see it */
	if (fps)
		poll(NULL, 0, (int)(1000 / fps));
}

/* The encoder's side of the move step: a dynamic importer. */
static int encoder_moved;

static void encoder_move_notify(struct dmabuf_attachment *att)
{
	encoder_moved++;
	trace("move: move_notify: the camera moved the buffer, our mapping is stale");
}

static const struct dmabuf_importer_ops encoder_importer_ops = {
	.version = DMABUF_IMPORTER_OPS_VERSION,
	.move_notify = encoder_move_notify,
};

static void encoder_read_moved(struct consumer *cs, struct dmabuf_sg_table *sgt, const char *when)
{
	char text[sizeof(MOVE_TEXT)] = { 0 };

	CHECK(dmabuf_dma_read(cs->dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr, text,
			      sizeof(text) - 1));
	if (strcmp(text, MOVE_TEXT))
		fail("move: read \"%s\" %s", text, when);
	trace("move: mapped %s: %u physical run%s from %#" PRIx64 "; the device reads \"%s\"",
	      when, dmabuf_sg_table_get_cpu_count(sgt),
	      dmabuf_sg_table_get_cpu_count(sgt) == 1 ? "" : "s",
	      dmabuf_sg_table_get_cpu_entries(sgt)[0].phys, text);
}

static void encoder_move_step(struct consumer *cs)
{
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct timespec t0;
	struct msg m;
	int fd;

	fd = consumer_next(cs, MSG_MOVE, 0, &m);
	CHECK(dmabuf_get(cs->ctx, fd, &buf));
	CHECK(dmabuf_dynamic_attach(buf, cs->dev, &encoder_importer_ops, NULL, &att));
	CHECK(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt));
	encoder_read_moved(cs, sgt, "before the move");
	send_msg(cs->sock, &(struct msg){ .type = MSG_ATTACHED, .frame = m.frame }, -1);
	consumer_next(cs, MSG_MOVED, m.frame, &m);
	/* The MOVE_NOTIFY event waits in our connection: dispatching the
	 * context runs move_notify. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!encoder_moved && ms_since(&t0) < WAIT_MS)
		dmabuf_ctx_dispatch_timeout(cs->ctx, 10);
	if (!encoder_moved)
		fail("move: no move_notify within %d ms", WAIT_MS);
	CHECK(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL));
	CHECK(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt));
	encoder_read_moved(cs, sgt, "after the move");
	CHECK(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL));
	CHECK(dmabuf_detach(buf, att));
	CHECK(dmabuf_put(buf));
	close(fd);
	send_msg(cs->sock, &(struct msg){ .type = MSG_DONE, .frame = m.frame, .ok = 1 }, -1);
}

static int consumer_main(int role, int sock)
{
	/* Encoder: behind an IOMMU (any pages will do, the IOMMU makes them
	 * look contiguous), but at most 64 KiB per DMA segment.
	 * Display: no IOMMU, so it sees physical addresses: it needs the
	 * whole frame as one physically contiguous run below 4 GiB. */
	static const struct dmabuf_device_info devices[NCONSUMERS] = {
		[ENCODER] = { .name = "encoder", .dma_mask_bits = 64,
			      .flags = DMABUF_DEVICE_IOMMU, .max_segment_size = 64 * 1024 },
		[DISPLAY] = { .name = "display", .dma_mask_bits = 32,
			      .flags = DMABUF_DEVICE_CONTIGUOUS, .max_segment_size = 0xfffff000 },
	};
	struct dmabuf_ctx_config cfg = { .seed = 7 + (uint64_t)role, .call_timeout_ms = WAIT_MS };
	struct consumer cs = { .role = role, .sock = sock };
	/* The encoder reads and writes; the display only reads (TO_DEVICE:
	 * memory to device, in the kernel's convention). */
	enum dmabuf_direction dir = role == ENCODER ? DMABUF_BIDIRECTIONAL : DMABUF_TO_DEVICE;

	who = consumer_name[role];
	CHECK(dmabuf_ctx_new(&cfg, &cs.ctx));
	CHECK(dmabuf_device_new(cs.ctx, &devices[role], &cs.dev));
	if (role == ENCODER) {
		CHECK(dmabuf_timeline_new("encoder", &cs.timeline));
		trace("device ready: behind an IOMMU, DMA segments of at most 64 KiB");
	} else {
		trace("device ready: no IOMMU, 32-bit DMA, needs one contiguous segment");
	}
	cs.pixels = malloc(PIXEL_BYTES);
	if (!cs.pixels)
		fail("out of memory");

	for (uint32_t expect = 1; expect <= nframes; expect++) {
		struct dmabuf *buf;
		struct dmabuf_attachment *att;
		struct dmabuf_sg_table *sgt;
		struct dmabuf_info info = { .struct_size = sizeof(info) };
		struct msg m;
		int fd;

		fd = consumer_next(&cs, MSG_FRAME, 0, &m);
		if (m.frame != expect || m.width != WIDTH || m.height != HEIGHT || m.stride != STRIDE)
			fail("got frame %u (%ux%u, stride %u), expected frame %u", m.frame, m.width,
			     m.height, m.stride, expect);
		/* The fd is the buffer. dmabuf_get() sees that another
		 * context exported it and imports it from the exporter's
		 * endpoint: we get a proxy whose ops run in the camera. */
		CHECK(dmabuf_get(cs.ctx, fd, &buf));
		CHECK(dmabuf_get_info(buf, &info));
		trace("frame %u: received fd %d; dmabuf_get imported it from the camera (%s, %llu MiB, "
		      "heap '%s')", m.frame, fd, info.imported ? "proxy" : "local",
		      (unsigned long long)(info.size >> 20), info.exp_name);

		/* Attach: tell the exporter what our device can address. */
		CHECK(dmabuf_attach(buf, cs.dev, &att));
		trace("frame %u: attached the %s device", m.frame, who);
		send_msg(sock, &(struct msg){ .type = MSG_ATTACHED, .frame = m.frame }, -1);

		/* Never touch pixels that are still being written. */
		consumer_wait_for_writer(&cs, buf, m.frame);

		/* The deferred heap chooses pages at the first map: wait
		 * until every device is attached (the camera tells us). */
		consumer_next(&cs, MSG_MAP, m.frame, &m);

		/* Map: the exporter returns its page list, and device
		 * addresses are assigned here, for our device. */
		CHECK(dmabuf_map_attachment(att, dir, &sgt));
		trace("frame %u: mapped -> %u DMA segment%s starting at %#" PRIx64
		      " (pages: %u physical run%s)", m.frame, dmabuf_sg_table_get_dma_count(sgt),
		      dmabuf_sg_table_get_dma_count(sgt) == 1 ? "" : "s",
		      dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
		      dmabuf_sg_table_get_cpu_count(sgt), dmabuf_sg_table_get_cpu_count(sgt) == 1 ? "" : "s");

		if (role == ENCODER)
			encoder_process_frame(&cs, buf, sgt, m.frame);
		else
			display_process_frame(&cs, sgt, m.frame);

		/* Unmap revokes our device addresses (a late DMA would
		 * fault); detach and put undo attach and get. */
		CHECK(dmabuf_unmap_attachment(att, sgt, dir));
		CHECK(dmabuf_detach(buf, att));
		CHECK(dmabuf_put(buf));
		close(fd);
		trace("frame %u: unmapped, detached, put, fd closed: done with it", m.frame);
		send_msg(sock, &(struct msg){ .type = MSG_DONE, .frame = m.frame, .ok = 1 }, -1);
	}

	if (role == ENCODER)
		encoder_move_step(&cs);
	free(cs.pixels);
	if (cs.timeline)
		dmabuf_timeline_destroy(cs.timeline);
	CHECK(dmabuf_device_destroy(cs.dev));
	dmabuf_ctx_destroy(cs.ctx);
	close(sock);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The main process: fork, watch, report                                    */
/* ------------------------------------------------------------------------ */

enum { CAMERA = NCONSUMERS, NPROCS };

struct child {
	const char *name;
	pid_t pid;
	int status;
	bool reaped;
};

static pid_t spawn(struct child *ch, int (*body)(int, int), int a, int b,
		   const int *close_fds, int nclose)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		trace("FAILED: fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* Only our own socket ends: a peer that dies is then seen
		 * as a closed socket. */
		for (int i = 0; i < nclose; i++)
			close(close_fds[i]);
		/* "camera", "encoder", "display" in ps, top and dmabuf-ls */
		prctl(PR_SET_NAME, ch->name, 0, 0, 0);
		exit(body(a, b));
	}
	ch->pid = pid;
	return pid;
}

static int encoder_entry(int sock, int unused)
{
	return consumer_main(ENCODER, sock);
}

static int display_entry(int sock, int unused)
{
	return consumer_main(DISPLAY, sock);
}

static void kill_all(struct child *ch)
{
	for (int i = 0; i < NPROCS; i++)
		if (ch[i].pid > 0 && !ch[i].reaped)
			kill(ch[i].pid, SIGKILL);
	for (int i = 0; i < NPROCS; i++)
		if (ch[i].pid > 0 && !ch[i].reaped) {
			waitpid(ch[i].pid, &ch[i].status, 0);
			ch[i].reaped = true;
		}
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: dmabuf-demo [--frames N] [--fps N]\n"
		"  --frames N  frames the camera shares (1..%d, default %d)\n"
		"  --fps N     start at most N frames a second and keep each on screen\n"
		"              for 1/N s (1..%d; default: as fast as the pipeline goes),\n"
		"              to watch it with dmabuf-ls\n",
		NFRAMES_MAX, NFRAMES_DEFAULT, FPS_MAX);
}

/* A decimal in [1, max]; false for anything else. */
static bool parse_count(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < 1 || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* 0: run; 1: --help; -1: bad arguments (said why on stderr). */
static int parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i], *val = NULL;
		uint32_t *dst, max;

		if (!strcmp(opt, "-h") || !strcmp(opt, "--help"))
			return 1;
		if (!strncmp(opt, "--frames", 8) && (opt[8] == '\0' || opt[8] == '=')) {
			dst = &nframes;
			max = NFRAMES_MAX;
			val = opt[8] ? opt + 9 : (i + 1 < argc ? argv[++i] : NULL);
		} else if (!strncmp(opt, "--fps", 5) && (opt[5] == '\0' || opt[5] == '=')) {
			dst = &fps;
			max = FPS_MAX;
			val = opt[5] ? opt + 6 : (i + 1 < argc ? argv[++i] : NULL);
		} else {
			fprintf(stderr, "dmabuf-demo: unknown argument '%s'\n", opt);
			return -1;
		}
		if (!parse_count(val, max, dst)) {
			fprintf(stderr, "dmabuf-demo: %s needs a number from 1 to %u, not '%s'\n",
				opt, max, val ? val : "");
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct child ch[NPROCS] = {
		[ENCODER] = { .name = "encoder" },
		[DISPLAY] = { .name = "display" },
		[CAMERA] = { .name = "camera" },
	};
	char why[200] = "";
	int enc[2], disp[2], left = 0;

	switch (parse_args(argc, argv)) {
	case 0:
		break;
	case 1:
		usage(stdout);
		return 0;
	default:
		usage(stderr);
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &demo_start);
	trace("a camera shares %u frames with an encoder and a display, three processes", nframes);
	trace("a dma-buf is memory shared as an fd: the exporter (camera) owns it; importers");
	trace("  attach their device, map it to get DMA addresses, and sync with fences");
	trace("heap '%s': pages are chosen at the first map, to suit every device attached by",
	      HEAP);
	trace("  then: here one contiguous run below 4 GiB, which the display needs and the");
	trace("  encoder (IOMMU) accepts, so both attach before either maps. (Heap 'cma' would");
	trace("  also work, but is contiguous even when no device needs it.)");
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, enc) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, disp) < 0) {
		printf("demo: FAILED: socketpair: %s\n", strerror(errno));
		return 1;
	}

	{
		const int cam_close[] = { enc[1], disp[1] };
		const int enc_close[] = { enc[0], disp[0], disp[1] };
		const int disp_close[] = { enc[0], enc[1], disp[0] };

		if (spawn(&ch[CAMERA], camera_main, enc[0], disp[0], cam_close, 2) > 0)
			left++;
		if (spawn(&ch[ENCODER], encoder_entry, enc[1], -1, enc_close, 3) > 0)
			left++;
		if (spawn(&ch[DISPLAY], display_entry, disp[1], -1, disp_close, 3) > 0)
			left++;
	}
	close(enc[0]);
	close(enc[1]);
	close(disp[0]);
	close(disp[1]);
	if (left != NPROCS)
		snprintf(why, sizeof(why), "could not start all processes");
	else
		trace("forked camera (pid %d), encoder (pid %d), display (pid %d)",
		      (int)ch[CAMERA].pid, (int)ch[ENCODER].pid, (int)ch[DISPLAY].pid);

	/* Reap the children; the first failure (or the deadline) stops the
	 * others, so a broken process never hangs the demo. */
	while (!why[0] && left > 0) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid == 0) {
			if (ms_since(&demo_start) > frames_deadline_ms() + DEMO_GRACE_MS) {
				snprintf(why, sizeof(why), "not finished after %.0f ms",
					 frames_deadline_ms() + DEMO_GRACE_MS);
				break;
			}
			poll(NULL, 0, 2);
			continue;
		}
		if (pid < 0) {
			snprintf(why, sizeof(why), "waitpid: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < NPROCS; i++) {
			if (ch[i].pid != pid)
				continue;
			ch[i].status = status;
			ch[i].reaped = true;
			left--;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
				trace("%s exited 0", ch[i].name);
			else if (WIFEXITED(status))
				snprintf(why, sizeof(why), "%s exited with status %d", ch[i].name,
					 WEXITSTATUS(status));
			else
				snprintf(why, sizeof(why), "%s killed by signal %d (%s)",
					 ch[i].name, WTERMSIG(status), strsignal(WTERMSIG(status)));
		}
	}
	if (why[0]) {
		kill_all(ch);
		printf("demo: FAILED: %s\n", why);
		return 1;
	}
	trace("all processes done in %.1f ms", ms_since(&demo_start));
	printf("demo: OK\n");
	return 0;
}
