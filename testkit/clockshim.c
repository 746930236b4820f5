/*
 * An LD_PRELOAD shim that steps a process's wall clock, for tests.
 *
 * The file named by $CLOCKSHIM_FILE holds two int64s, mapped into memory
 * so a test changes them by writing the file: an offset and a frozen
 * instant, both in microseconds. The wall clock (CLOCK_REALTIME and its
 * coarse variant, gettimeofday, time) reads the frozen instant when it is
 * not zero, else the real clock, plus the offset. Several processes can
 * share one file, and one clock. The monotonic clocks are left alone.
 * (libfaketime deadlocks Debian's redis-server 7.0; this does not.)
 *
 * Built by testkit::clock (cc -shared -fPIC -O2 -o clockshim.so clockshim.c -ldl).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static volatile const int64_t *shared; /* [offset_us, frozen_us] */

static void shim_init(void) {
    if (!real_clock_gettime)
        real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    if (!shared) {
        const char *path = getenv("CLOCKSHIM_FILE");
        if (path) {
            int fd = open(path, O_RDONLY);
            if (fd >= 0) {
                void *p = mmap(NULL, 2 * sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
                close(fd);
                if (p != MAP_FAILED) shared = (volatile const int64_t *)p;
            }
        }
    }
}

static void shift(struct timespec *ts) {
    int64_t off = shared ? shared[0] : 0;
    int64_t frozen = shared ? shared[1] : 0;
    if (frozen != 0) {
        ts->tv_sec = (time_t)(frozen / 1000000);
        ts->tv_nsec = (long)(frozen % 1000000) * 1000;
    }
    int64_t ns = (int64_t)ts->tv_nsec + (off % 1000000) * 1000;
    int64_t s = (int64_t)ts->tv_sec + off / 1000000;
    while (ns < 0) { ns += 1000000000; s -= 1; }
    while (ns >= 1000000000) { ns -= 1000000000; s += 1; }
    ts->tv_sec = (time_t)s;
    ts->tv_nsec = (long)ns;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    shim_init();
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) shift(ts);
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    (void)tz;
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0 && tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
