/* The elementwise passes of the fixed-point emulation (e2train/torch/fused.py), one loop each.
 *
 * Each function is the compiled form of the torch function of the same name in fused.py and
 * must give the same bits: the same IEEE double / float operations in the same order. So:
 * no -ffast-math (a division stays a division), -ffp-contract=off (no fused multiply-add),
 * and clamps written as comparisons, which leave NaN alone as torch.clamp does
 * (-fno-trapping-math lets those comparisons become vector selects; it changes no result).
 * tests/torch/test_psg.py compares every function with its torch form.
 *
 * Threads: the outer loops split the work in chunks over OpenMP threads (the caller passes
 * torch's thread count); each chunk is a plain loop the compiler vectorises.
 */
#include <math.h>
#include <stdint.h>

#define CHUNK 16384
#define PARALLEL _Pragma("omp parallel for num_threads(nt) if(nt > 1 && n > 4 * CHUNK) schedule(static)")

static inline double clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* out = clamp(floor(x / div + 0.5), lo, hi) with the quotient rounded in double
 * (core.fixedpoint.quantize), for div = m * 2^-s. That result is the real floor(t + 1/2) of
 * t = x/div: t is a ratio of a 24-bit and a 15-bit integer times a power of two, so a t that
 * is not a half-integer lies at least |t|*2^-25 from every half-integer, beyond double's
 * rounding error. */
static void quantize_chunk(const float *restrict x, float *restrict out, int64_t n, double div,
                           double lo, double hi) {
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)clampd(floor((double)x[i] / div + 0.5), lo, hi);
}

/* The same real floor(x*2^s/m + 1/2), in float at twice the vector width: y = x*2^s is exact
 * (a power of two; an overflow to inf or an underflow only where the code saturates or is 0
 * anyway), r = y/m is correctly rounded, so r crosses no half-integer the true quotient does
 * not reach and lands on one only if the quotient is within rounding of it; then the exact
 * residual y - r*m (fmaf: exact for a correctly rounded quotient) tells which side. With
 * k = floor(r) and d = r - (k + 1/2): the code is k + 1 if d > 0, or d = 0 and y >= r*m;
 * else k. d is exact wherever r and k + 1/2 are within a factor of two (Sterbenz), and
 * elsewhere (|r| < 1/4 away from k + 1/2 = +-1/2) it cannot round to zero or change sign;
 * beyond |r| = 2^22, where k + 1/2 rounds, every code saturates. (r + 0.5f and r - k are
 * not exact for all r: either would misround a few quotients next to a half-integer.) */
static void quantize_chunk_f32(const float *restrict x, float *restrict out, int64_t n, float pow2s,
                               float m, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) {
        float y = x[i] * pow2s;
        float r = y / m;
        float k = floorf(r);
        float d = r - (k + 0.5f);              /* its sign and zero are exact (see above) */
        float e = fmaf(-r, m, y);
        k = (d > 0.0f || (d == 0.0f && e >= 0.0f)) ? k + 1.0f : k;
        out[i] = clampf(k, lo, hi);
    }
}

void e2_quantize(const float *x, float *out, int64_t n, int64_t m, int s, double lo, double hi, int nt) {
    double div = ldexp((double)m, -s);
#ifdef __FMA__
    int f32 = m > 0 && m < (1 << 24) && s >= 0 && s <= 126;
#else
    int f32 = 0;                          /* fmaf would be a library call: the double form is faster */
#endif
    float pow2s = f32 ? ldexpf(1.0f, s) : 0.0f;
    PARALLEL
    for (int64_t b = 0; b < n; b += CHUNK) {
        if (f32)
            quantize_chunk_f32(x + b, out + b, min64(CHUNK, n - b), pow2s, (float)m, (float)lo, (float)hi);
        else
            quantize_chunk(x + b, out + b, min64(CHUNK, n - b), div, lo, hi);
    }
}

/* q = clamp(floor(p0*c0 [+ p1*c1] + half), lo, hi) in double; out = (float)(q * v); returns
 * max |q|. p0 holds float or double integers, p1 (float) may be NULL. Both are finite by
 * construction (convolution sums of finite codes); the clamp here sends a NaN to lo (torch's
 * keeps it), which keeps q an integer in [lo, hi] for the int32 max. out may be p0 itself
 * (the convolution's output buffer reused for the layer's output): element i is read before
 * it is written and no other, so the loops carry no dependence (ivdep, no restrict). */
#define REQUANT_LOOP(LOAD)                                                  \
    _Pragma("GCC ivdep")                                                    \
    for (int64_t i = 0; i < n; i++) {                                       \
        double f = floor(LOAD + half);                                      \
        double q = f > lo ? (f < hi ? f : hi) : lo;                         \
        out[i] = (float)(q * v);                                            \
        int32_t qi = (int32_t)q;                                            \
        mx = qi > mx ? qi : mx;                                             \
        mn = qi < mn ? qi : mn;                                             \
    }

static int32_t requant_f32(const float *a, const float *b, int64_t n, double c0, double c1,
                           double half, double lo, double hi, double v, float *out) {
    int32_t mx = 0, mn = 0;
    if (b) {
        REQUANT_LOOP((double)a[i] * c0 + (double)b[i] * c1)
    } else {
        REQUANT_LOOP((double)a[i] * c0)
    }
    return mx > -mn ? mx : -mn;
}

static int32_t requant_f64(const double *a, const float *b, int64_t n, double c0, double c1,
                           double half, double lo, double hi, double v, float *out) {
    int32_t mx = 0, mn = 0;
    if (b) {
        REQUANT_LOOP(a[i] * c0 + (double)b[i] * c1)
    } else {
        REQUANT_LOOP(a[i] * c0)
    }
    return mx > -mn ? mx : -mn;
}

/* The one-part float case in float arithmetic (twice the vector width), with the quantiser's
 * argument: t = a*c0 is a dyadic rational with denominator 2^s, so it is a half-integer or
 * at least 2^-s away from every one; r = fl(a*c0) crosses none that t does not reach and
 * lands on one only when t is within rounding of it, where the exact product residual
 * a*c0 - r (fmaf; exact without underflow) says which side. Round half up: k + 1 if
 * d = r - (k + 1/2) > 0, or d = 0 and the residual >= 0. The dequantised value q*v is one
 * float multiply, which rounds the exact product once, as the double form does. Used only
 * where c0 and v are normal floats and half = 1/2 (the caller checks). */
static int32_t requant_f32_float(const float *a, int64_t n, float c0, float lo, float hi, float v, float *out) {
    int32_t mx = 0, mn = 0;
    _Pragma("GCC ivdep")
    for (int64_t i = 0; i < n; i++) {
        float r = a[i] * c0;
        float e = fmaf(a[i], c0, -r);
        float k = floorf(r);
        float d = r - (k + 0.5f);
        k = (d > 0.0f || (d == 0.0f && e >= 0.0f)) ? k + 1.0f : k;
        float q = k > lo ? (k < hi ? k : hi) : lo;
        out[i] = q * v;
        int32_t qi = (int32_t)q;
        mx = qi > mx ? qi : mx;
        mn = qi < mn ? qi : mn;
    }
    return mx > -mn ? mx : -mn;
}

static int is_normal_float(double x) {
    float f = (float)x;
    return (double)f == x && fabsf(f) >= 1.17549435e-38f && fabsf(f) < 1e30f;
}

double e2_requantize(const void *p0, int p0_f64, const float *p1, int64_t n, double c0, double c1,
                     double half, double lo, double hi, double v, float *out, int nt) {
    int32_t top = 0;
#ifdef __FMA__
    if (!p0_f64 && !p1 && half == 0.5 && is_normal_float(c0) && is_normal_float(v)) {
        _Pragma("omp parallel for num_threads(nt) if(nt > 1 && n > 4 * CHUNK) schedule(static) reduction(max:top)")
        for (int64_t b = 0; b < n; b += CHUNK) {
            int32_t t = requant_f32_float((const float *)p0 + b, min64(CHUNK, n - b), (float)c0, (float)lo,
                                          (float)hi, (float)v, out + b);
            top = t > top ? t : top;
        }
        return (double)top;
    }
#endif
    _Pragma("omp parallel for num_threads(nt) if(nt > 1 && n > 4 * CHUNK) schedule(static) reduction(max:top)")
    for (int64_t b = 0; b < n; b += CHUNK) {
        int64_t m = min64(CHUNK, n - b);
        const float *q1 = p1 ? p1 + b : 0;
        int32_t t = p0_f64 ? requant_f64((const double *)p0 + b, q1, m, c0, c1, half, lo, hi, v, out + b)
                           : requant_f32((const float *)p0 + b, q1, m, c0, c1, half, lo, hi, v, out + b);
        top = t > top ? t : top;
    }
    return (double)top;
}

enum { SLOT_X = 0, SLOT_H = 1, SLOT_L = 2 };

/* The predictor limb of a float code: h = clamp(sign(x) * floor((|x| + half) * inv), lo, hi),
 * rounding to nearest with ties away from zero (contract v2; core.fixedpoint.msb_split_*). */
static inline float split_h(float x, float half, float inv, float lo, float hi) {
    float a = floorf((fabsf(x) + half) * inv);
    return clampf(x < 0.0f ? -a : a, lo, hi);
}

/* One limb of a row of float codes: h (split_h), l = x - step*h (float arithmetic, exact for
 * these integers), or x itself. */
static void limb_row(const float *restrict x, float *restrict o, int64_t k, int slot, float half, float inv,
                     float step, float lo, float hi) {
    if (slot == SLOT_X) {
        for (int64_t i = 0; i < k; i++) o[i] = x[i];
    } else if (slot == SLOT_H) {
        for (int64_t i = 0; i < k; i++) o[i] = split_h(x[i], half, inv, lo, hi);
    } else {
        for (int64_t i = 0; i < k; i++) o[i] = x[i] - step * split_h(x[i], half, inv, lo, hi);
    }
}

/* The predictor limbs of x (rows x k): slot s of out gets limb slots[s], at out[s][r][:] when
 * batch_major, else out[r][s][:]. */
void e2_split(const float *x, float *out, int64_t rows, int64_t k, float half, float inv, float step,
              float lo, float hi, const int32_t *slots, int p, int batch_major, int nt) {
    int64_t n = rows * k;
    _Pragma("omp parallel for num_threads(nt) if(nt > 1 && n > 4 * CHUNK) schedule(static)")
    for (int64_t r = 0; r < rows; r++)
        for (int s = 0; s < p; s++)
            limb_row(x + r * k, out + (batch_major ? ((int64_t)s * rows + r) * k : (r * p + s) * k), k,
                     slots[s], half, inv, step, lo, hi);
}

/* The PSG rule (core.golden.psg_decide) on float64 sums holding integers, where
 * max|G_msb| * one < 2^53 so that every comparison below is exact (one = 2^BETA_FRAC_BITS):
 * predicted where |G_msb| * one >= beta_q * max|G_msb| and G_msb != 0 (and beta_q > 0); sign from G_msb there,
 * from G_exact elsewhere (sign(0) = 0). Writes sign (double) and predicted (0/1 bytes);
 * returns the number predicted. */
static inline double sgn(double v) { return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0); }

int64_t e2_decide(const double *restrict gm, const double *restrict ge, int64_t n, double one, double beta_q,
                  double amax, double *restrict sign, uint8_t *restrict pred) {
    double tau = beta_q * amax;
    int on = beta_q > 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs(gm[i]);
        int p = on && a * one >= tau && gm[i] != 0.0;
        pred[i] = (uint8_t)p;
        sign[i] = p ? sgn(gm[i]) : sgn(ge[i]);
        count += p;
    }
    return count;
}
