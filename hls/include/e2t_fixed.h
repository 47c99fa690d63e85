// The fixed-point contract's integer primitives, shared by the three kernels.
// Same arithmetic as host/e2train/core/fixedpoint.py (see docs/fixed-point.md); no float.
#ifndef E2T_FIXED_H
#define E2T_FIXED_H

#include <stdint.h>

// The fixed-point contract's version (host/e2train/core/fixedpoint.py CONTRACT_VERSION).
// 2: the MSB split rounds half away from zero (v1: half up).
#define E2T_CONTRACT_VERSION 2

// Status bits a kernel returns (s_axilite return register). 0 = done, outputs valid.
enum {
    E2T_OK = 0,
    E2T_ERR_SHAPE = 1,        // a shape or scalar outside what the kernel accepts
    E2T_ERR_SAMPLE = 2,       // a sample index outside [0, n)
    E2T_ERR_OVERFLOW = 4,     // |acc| * M reached 2**62: results saturated, not valid
};

static inline int64_t e2t_clamp(int64_t v, int64_t lo, int64_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

// The largest |acc| whose product with M stays below 2**62 (a kernel computes it once per call:
// a 64-bit division per output would cost more than the requantisation itself).
static inline int64_t e2t_requant_limit(int64_t m) {
    return m != 0 ? ((INT64_C(1) << 62) - 1) / m : INT64_MAX;
}

// sat((acc * M + 2**(S-1)) >> S). The product must stay below 2**62 as in the golden
// model; beyond it (|acc| > acc_limit = e2t_requant_limit(M)) the result saturates and *ovf
// is set (never a silent wrap).
static inline int64_t e2t_requant_at(int64_t acc, int64_t m, int s, int64_t lo, int64_t hi, int64_t acc_limit,
                                     int *ovf) {
    int64_t a = acc < 0 ? -acc : acc;
    if (a > acc_limit) {
        *ovf = 1;
        return acc < 0 ? lo : hi;
    }
    int64_t v = acc * m;
    if (s > 0) v = (v + (INT64_C(1) << (s - 1))) >> s;   // arithmetic shift: round half up
    return e2t_clamp(v, lo, hi);
}

static inline int64_t e2t_requant(int64_t acc, int64_t m, int s, int64_t lo, int64_t hi, int *ovf) {
    return e2t_requant_at(acc, m, s, lo, hi, e2t_requant_limit(m), ovf);
}

// The requantiser, sat((acc * m + 2^(s-1)) >> s) (e2t_requant_at), as a function of its own
// for Vitis HLS (INLINE off) so that the top's ALLOCATION pragma makes every call site share
// E2T_REQUANT_UNITS instances: the forward and input-gradient output stages (one call a cycle)
// and the block unit's lanes (E2T_BLOCK_LANES calls a cycle, m = 1). C++ `inline` and defined
// here, so that g++ still inlines it into the C simulation's loops.
#define E2T_REQUANT_UNITS 4
inline int64_t e2t_requant_unit(int64_t acc, int64_t m, int s, int64_t lo, int64_t hi, int64_t acc_limit,
                                int *ovf) {
#pragma HLS INLINE off
#pragma HLS PIPELINE II=1
    return e2t_requant_at(acc, m, s, lo, hi, acc_limit, ovf);
}

// The MSB split (x_h, g_h) and the PSG decision live in msb_split.h (psg::split_x,
// psg::split_g, psg::confident).

// A kernel's large on-chip buffer: static (one BRAM instance) in synthesis; one per thread in
// the C simulation, which the host may call from several threads at once.
#ifdef __SYNTHESIS__
#define E2T_KERNEL_STATIC static
#else
#define E2T_KERNEL_STATIC static thread_local
#endif

#endif
