/*
 * A C reference of xensim's superpage slow and fast paths, for benchmarks/bench_hypercalls.py.
 *
 * The same algorithm as xensim's Xen 4.1 design (docs/xen-facts.md sections 3 and 5d),
 * written for this project (not Xen's code): per-frame count_info / type_info words
 * updated with real atomic compare-and-swap loops, and one 64-bit spage word per
 * superpage. It measures the refcount work only (no hypercall decoding, no page-table
 * walk): the floor a C implementation of the same algorithm would pay.
 *
 * Output: one line "slow_pair_ns fast_pair_ns batch_pair_ns_per_superpage".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NFRAMES (512u * 1024u)              /* 2 GiB of frames: 1024 superpages */
#define COUNT_MASK ((1ull << 55) - 1)
#define PGC_allocated (1ull << 63)
#define TYPE_MASK (15ull << 60)
#define PGT_writable (7ull << 60)
#define PGT_validated (1ull << 58)
#define SGT_mask (3ull << 62)
#define SGT_dynamic (2ull << 62)
#define SGT_count ((1ull << 61) - 1)

static uint64_t *count_info, *type_info, *spage;
static uint16_t *owner;

static int cas(uint64_t *p, uint64_t old, uint64_t nw) {
    return __atomic_compare_exchange_n(p, &old, nw, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static int get_page(unsigned i, uint16_t d) {
    uint64_t x;
    do {
        x = __atomic_load_n(&count_info[i], __ATOMIC_RELAXED);
        uint64_t c = x & COUNT_MASK;
        if (c == 0 || c == COUNT_MASK) return 0;
    } while (!cas(&count_info[i], x, x + 1));
    if (owner[i] != d) { __atomic_fetch_sub(&count_info[i], 1, __ATOMIC_SEQ_CST); return 0; }
    return 1;
}

static int get_page_type(unsigned i, uint64_t type) {
    uint64_t x, nx;
    do {
        x = __atomic_load_n(&type_info[i], __ATOMIC_RELAXED);
        uint64_t c = x & COUNT_MASK;
        if (c == COUNT_MASK) return 0;
        if (c == 0) nx = ((x & ~(TYPE_MASK | PGT_validated)) | type | PGT_validated) + 1;
        else if ((x & TYPE_MASK) != type) return 0;
        else nx = x + 1;
    } while (!cas(&type_info[i], x, nx));
    return 1;
}

static void put_page(unsigned i) { __atomic_fetch_sub(&count_info[i], 1, __ATOMIC_SEQ_CST); }
static void put_page_type(unsigned i) { __atomic_fetch_sub(&type_info[i], 1, __ATOMIC_SEQ_CST); }

static int take_512(unsigned first, uint16_t d) {
    for (unsigned i = first; i < first + 512; i++) {
        if (!get_page(i, d)) goto undo;
        if (!get_page_type(i, PGT_writable)) { put_page(i); goto undo; }
        continue;
undo:
        while (i-- > first) { put_page_type(i); put_page(i); }
        return 0;
    }
    return 1;
}

static void give_512(unsigned first) {
    for (unsigned i = first; i < first + 512; i++) { put_page_type(i); put_page(i); }
}

static int get_superpage(unsigned sp, uint16_t d) {
    int taken = 0;
    uint64_t x, nx;
    for (;;) {
        x = __atomic_load_n(&spage[sp], __ATOMIC_RELAXED);
        if ((x & SGT_mask) == 0 && !taken) {
            if (!take_512(sp * 512, d)) return -22;
            taken = 1;
            continue;
        }
        if ((x & SGT_mask) != 0 && taken) { give_512(sp * 512); taken = 0; }
        nx = (x & SGT_mask) == 0 ? (SGT_dynamic | 1) : x + 1;
        if (cas(&spage[sp], x, nx)) return 0;
    }
}

static void put_superpage(unsigned sp) {
    uint64_t x, nx;
    int last;
    do {
        x = __atomic_load_n(&spage[sp], __ATOMIC_RELAXED);
        last = (x & SGT_mask) == SGT_dynamic && (x & SGT_count) == 1;
        nx = last ? 0 : x - 1;
    } while (!cas(&spage[sp], x, nx));
    if (last) give_512(sp * 512);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void) {
    count_info = calloc(NFRAMES, 8); type_info = calloc(NFRAMES, 8);
    owner = calloc(NFRAMES, 2); spage = calloc(NFRAMES / 512, 8);
    for (unsigned i = 0; i < NFRAMES; i++) { count_info[i] = PGC_allocated | 1; owner[i] = 1; }
    volatile int sink = 0;
    const int reps = 20000;
    /* slow path: map + unmap of the only mapping of one superpage */
    double t0 = now();
    for (int r = 0; r < reps; r++) { sink += get_superpage(3, 1); put_superpage(3); }
    double slow = (now() - t0) / reps;
    /* fast path: a second mapping of a mapped superpage */
    sink += get_superpage(5, 1);
    t0 = now();
    for (int r = 0; r < reps * 50; r++) { sink += get_superpage(5, 1); put_superpage(5); }
    double fast = (now() - t0) / (reps * 50);
    /* a batch over 512 distinct superpages, map then unmap, per superpage */
    const int breps = 40;
    t0 = now();
    for (int r = 0; r < breps; r++) {
        for (unsigned sp = 512; sp < 1024; sp++) sink += get_superpage(sp, 1);
        for (unsigned sp = 512; sp < 1024; sp++) put_superpage(sp);
    }
    double batch = (now() - t0) / (breps * 512.0);
    printf("%.1f %.2f %.1f\n", slow, fast, batch);
    return sink == 12345 ? 1 : 0;
}
