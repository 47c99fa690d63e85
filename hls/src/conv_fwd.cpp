// conv_fwd: y = requant(conv(x, w) + bias), int8 out (or uint8 with the ReLU fused).
//
// Loop structure (docs/kernels.md, the performance model follows it):
//   for each tile of TILE_CO output channels     weights of the tile -> wt (BRAM), once
//     for each listed sample                     (SLU: others are neither read nor written)
//       for each output row oy                   acc[ox][t] = bias (BRAM, int32)
//         for each step (tile of TILE_CI input channels, kernel row ky inside the image)
//           load the next step's TILE_CI padded input rows (bursts) || MACs of this step:
//           for each (kx, ox), flattened, PIPELINE II=1: TILE_CO x TILE_CI MACs per cycle
//         requantise (TILE_CO units in parallel), write TILE_CO output rows (bursts)
// int32 accumulation is exact for the shapes the kernel accepts (e2t_shape.h bounds).
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"

#define TCO E2T_TILE_CO
#define TCI E2T_TILE_CI

namespace {

// One step of the MAC loop: input-channel tile ci0, kernel row ky, input row iy.
struct Step {
    int ci0, ky, iy;
};

// TILE_CI padded input rows into a line buffer (lanes past the last channel and the
// padding columns hold 0). Vitis widens the byte reads to the 64-bit port (max_widen_bitwidth).
void load_rows(int16_t buf[TCI][E2T_LINE_MAX], const uint8_t *xs, int ci, int h, int wd, int pad,
               const Step &st, int x_unsigned) {
    const int tci = ci - st.ci0 < TCI ? ci - st.ci0 : TCI;
    for (int c = 0; c < TCI; c++) {
        const uint8_t *src = xs + ((int64_t)(c < tci ? st.ci0 + c : st.ci0) * h + st.iy) * wd;
        for (int j = 0; j < wd + 2 * pad; j++) {
#pragma HLS PIPELINE II=1
            const int ix = j - pad;
            int16_t v = 0;
            if (c < tci && ix >= 0 && ix < wd) v = x_unsigned ? (int16_t)src[ix] : (int16_t)(int8_t)src[ix];
            buf[c][j] = v;
        }
    }
}

// acc[ox][t] += sum_c w[t][c][ky][kx] * row_c[ox*stride + kx] for every kx: TILE_CO x TILE_CI
// MACs per cycle, the (kx, ox) nest flattened into one pipeline.
void mac_rows(int32_t acc[E2T_LINE_MAX][TCO], const int16_t buf[TCI][E2T_LINE_MAX],
              const int8_t wt[][TCO], int k, int wo, int stride, const Step &st) {
    const int kk = k * k;
    for (int kx = 0; kx < k; kx++) {
        // The TILE_CO x TILE_CI weights of this tap, held in registers for the whole row.
        int16_t wreg[TCI][TCO];
#pragma HLS ARRAY_PARTITION variable=wreg complete dim=0
        for (int c = 0; c < TCI; c++)
            for (int t = 0; t < TCO; t++) wreg[c][t] = wt[((int64_t)st.ci0 + c) * kk + st.ky * k + kx][t];
        for (int ox = 0; ox < wo; ox++) {
#pragma HLS LOOP_FLATTEN
#pragma HLS PIPELINE II=1
            const int j = ox * stride + kx;
            int32_t sum[TCO];
            for (int t = 0; t < TCO; t++) sum[t] = acc[ox][t];
            for (int c = 0; c < TCI; c++) {
#pragma HLS UNROLL
                const int16_t xv = buf[c][j];
                for (int t = 0; t < TCO; t++) {
#pragma HLS UNROLL
                    sum[t] += (int32_t)xv * (int32_t)wreg[c][t];
                }
            }
            for (int t = 0; t < TCO; t++) acc[ox][t] = sum[t];
        }
    }
}

}  // namespace

extern "C" int conv_fwd(const uint8_t *x, const int8_t *w, const int32_t *bias, uint8_t *y,
                        const int32_t *samples, int n_samples,
                        int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                        int x_unsigned, int has_bias, int relu, int32_t mult_m, int mult_s) {
#pragma HLS INTERFACE m_axi port=x offset=slave bundle=gx max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=w offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=bias offset=slave bundle=gw depth=64
#pragma HLS INTERFACE m_axi port=y offset=slave bundle=gy max_write_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=samples offset=slave bundle=gw depth=64
#pragma HLS INTERFACE s_axilite port=n_samples
#pragma HLS INTERFACE s_axilite port=n
#pragma HLS INTERFACE s_axilite port=ci
#pragma HLS INTERFACE s_axilite port=h
#pragma HLS INTERFACE s_axilite port=wd
#pragma HLS INTERFACE s_axilite port=co
#pragma HLS INTERFACE s_axilite port=k
#pragma HLS INTERFACE s_axilite port=stride
#pragma HLS INTERFACE s_axilite port=pad
#pragma HLS INTERFACE s_axilite port=x_unsigned
#pragma HLS INTERFACE s_axilite port=has_bias
#pragma HLS INTERFACE s_axilite port=relu
#pragma HLS INTERFACE s_axilite port=mult_m
#pragma HLS INTERFACE s_axilite port=mult_s
#pragma HLS INTERFACE s_axilite port=return
    if (!e2t_shape_ok(n, ci, h, wd, co, k, stride, pad) || mult_m < 0 || mult_s < 0 || mult_s > 62)
        return E2T_ERR_SHAPE;
    if (!e2t_samples_ok(samples, n_samples, n)) return E2T_ERR_SAMPLE;

    const int kk = k * k;
    const int ho = e2t_out_dim(h, k, stride, pad), wo = e2t_out_dim(wd, k, stride, pad);
    const int64_t lo = relu ? 0 : -128, hi = relu ? 255 : 127;
    int ovf = 0;

    int8_t wt[E2T_MAX_CI * E2T_MAX_K * E2T_MAX_K][TCO];   // [ci*kk + tap][t]
#pragma HLS ARRAY_PARTITION variable=wt complete dim=2
    int32_t acc[E2T_LINE_MAX][TCO];
#pragma HLS ARRAY_PARTITION variable=acc complete dim=2
    int16_t xbuf[2][TCI][E2T_LINE_MAX];                   // ping-pong padded input rows
#pragma HLS ARRAY_PARTITION variable=xbuf complete dim=2
    Step steps[(E2T_MAX_DIM / TCI) * E2T_MAX_K];
    int32_t bias_t[TCO];
    uint8_t obuf[TCO][E2T_LINE_MAX];                      // requantised rows, written in bursts
#pragma HLS ARRAY_PARTITION variable=obuf complete dim=1

    for (int co0 = 0; co0 < co; co0 += TCO) {
        const int tco = co - co0 < TCO ? co - co0 : TCO;
        // Weight tile, once per call: every listed sample reuses it. Lanes past the last
        // filter hold zeros and their outputs are not written.
        for (int t = 0; t < TCO; t++)                    // one burst per filter
            for (int r = 0; r < ci * kk; r++) {
#pragma HLS PIPELINE II=1
                wt[r][t] = t < tco ? w[(int64_t)(co0 + t) * ci * kk + r] : 0;
            }
        for (int t = 0; t < TCO; t++)
            bias_t[t] = (has_bias && t < tco) ? bias[co0 + t] : 0;

        for (int si = 0; si < n_samples; si++) {
            const int s = samples[si];
            const uint8_t *xs = x + (int64_t)s * ci * h * wd;
            uint8_t *ys = y + (int64_t)s * co * ho * wo;
            for (int oy = 0; oy < ho; oy++) {
                for (int ox = 0; ox < wo; ox++) {
#pragma HLS PIPELINE II=1
                    for (int t = 0; t < TCO; t++) acc[ox][t] = bias_t[t];
                }
                // The steps of this row; the next step's rows load while this one's MACs
                // run (ping-pong line buffers, two independent calls HLS runs in parallel).
                int ns = 0;
                for (int ci0 = 0; ci0 < ci; ci0 += TCI)
                    for (int ky = 0; ky < k; ky++) {
                        const int iy = oy * stride + ky - pad;
                        if (iy >= 0 && iy < h) steps[ns++] = Step{ci0, ky, iy};   // padding rows add nothing
                    }
                if (ns) load_rows(xbuf[0], xs, ci, h, wd, pad, steps[0], x_unsigned);
                for (int j = 0; j < ns; j++) {
                    if (j + 1 < ns) load_rows(xbuf[(j + 1) & 1], xs, ci, h, wd, pad, steps[j + 1], x_unsigned);
                    mac_rows(acc, xbuf[j & 1], wt, k, wo, stride, steps[j]);
                }
                // TILE_CO requantisers in parallel, then one burst per output row.
                for (int ox = 0; ox < wo; ox++) {
#pragma HLS PIPELINE II=1
                    for (int t = 0; t < TCO; t++)
                        obuf[t][ox] = (uint8_t)(e2t_requant(acc[ox][t], mult_m, mult_s, lo, hi, &ovf) & 0xff);
                }
                for (int t = 0; t < tco; t++) {
                    uint8_t *dst = ys + ((int64_t)(co0 + t) * ho + oy) * wo;
                    for (int ox = 0; ox < wo; ox++) {
#pragma HLS PIPELINE II=1
                        dst[ox] = obuf[t][ox];
                    }
                }
            }
        }
    }
    return ovf ? E2T_ERR_OVERFLOW : E2T_OK;
}
