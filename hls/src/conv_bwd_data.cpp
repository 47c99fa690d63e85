// conv_bwd_data: g_x = requant(conv_transpose(g_y, w)) as int16, 48-bit accumulation.
//
// Gather form (each g_x row is produced once, no read-modify-write of DDR):
//   for each tile of TILE_CI input channels (the outputs here)     weights -> wt (BRAM)
//     for each listed sample                                       (SLU: others untouched)
//       for each input row iy                                      acc[ix][c] = 0 (int64)
//         for each step (tile of TILE_CO output channels, ky with oy = (iy+pad-ky)/stride whole)
//           load the next step's TILE_CO g_y rows (bursts) || MACs of this step:
//           for each (kx, ox) with ix = ox*stride+kx-pad inside the row, flattened,
//             PIPELINE II=1: TILE_CO x TILE_CI MACs (16x8-bit) per cycle
//         requantise (TILE_CI units in parallel), write TILE_CI g_x rows (bursts)
// Products fit 23 bits; a TILE_CO-term partial sum fits int32 and is added into the 48-bit
// (DSP48 P register) accumulator, which holds co*k*k terms exactly (< 2**36).
#include "e2t_fixed.h"
#include "e2t_kernels.h"
#include "e2t_shape.h"
#include "e2t_tiles.h"

#define TCO E2T_TILE_CO
#define TCI E2T_TILE_CI

namespace {

// One step: output-channel tile o0, kernel row ky, g_y row oy.
struct Step {
    int o0, ky, oy;
};

// TILE_CO g_y rows (lanes past the last channel hold 0).
void load_rows(int16_t buf[TCO][E2T_MAX_DIM], const int16_t *gs, int co, int ho, int wo, const Step &st) {
    const int tco = co - st.o0 < TCO ? co - st.o0 : TCO;
    for (int o = 0; o < TCO; o++) {
        const int16_t *src = gs + ((int64_t)(o < tco ? st.o0 + o : st.o0) * ho + st.oy) * wo;
        for (int ox = 0; ox < wo; ox++) {
#pragma HLS PIPELINE II=1
            buf[o][ox] = o < tco ? src[ox] : 0;
        }
    }
}

// acc[ix][c] += sum_o g_o[ox] * w[o][c][ky][kx] for every kx and each ix = ox*stride + kx - pad
// inside the row: TILE_CO x TILE_CI MACs per cycle, (kx, ox) flattened into one pipeline.
void mac_rows(int64_t acc[E2T_MAX_DIM][TCI], const int16_t buf[TCO][E2T_MAX_DIM],
              const int8_t wt[][TCI], int k, int wd, int wo, int stride, int pad, const Step &st) {
    const int kk = k * k;
    for (int kx = 0; kx < k; kx++) {
        int ox0 = 0;                                      // first ox whose ix is >= 0
        while (ox0 * stride + kx - pad < 0) ox0++;
        // The TILE_CO x TILE_CI weights of this tap, held in registers for the whole row.
        int16_t wreg[TCO][TCI];
#pragma HLS ARRAY_PARTITION variable=wreg complete dim=0
        for (int o = 0; o < TCO; o++)
            for (int c = 0; c < TCI; c++) wreg[o][c] = wt[((int64_t)st.o0 + o) * kk + st.ky * k + kx][c];
        for (int ox = ox0; ox < wo; ox++) {
#pragma HLS LOOP_FLATTEN
#pragma HLS PIPELINE II=1
            const int ix = ox * stride + kx - pad;
            if (ix >= wd) break;
            int32_t part[TCI];                            // TILE_CO terms: < 2**26, exact in int32
            for (int c = 0; c < TCI; c++) part[c] = 0;
            for (int o = 0; o < TCO; o++) {
#pragma HLS UNROLL
                const int16_t gv = buf[o][ox];
                for (int c = 0; c < TCI; c++) {
#pragma HLS UNROLL
                    part[c] += (int32_t)gv * (int32_t)wreg[o][c];
                }
            }
            for (int c = 0; c < TCI; c++) acc[ix][c] += part[c];
        }
    }
}

}  // namespace

extern "C" int conv_bwd_data(const int16_t *g_y, const int8_t *w, int16_t *g_x,
                             const int32_t *samples, int n_samples,
                             int n, int ci, int h, int wd, int co, int k, int stride, int pad,
                             int32_t mult_m, int mult_s) {
#pragma HLS INTERFACE m_axi port=g_y offset=slave bundle=gx max_read_burst_length=256 max_widen_bitwidth=64 depth=1024
#pragma HLS INTERFACE m_axi port=w offset=slave bundle=gw depth=1024
#pragma HLS INTERFACE m_axi port=g_x offset=slave bundle=gy max_write_burst_length=256 max_widen_bitwidth=64 depth=1024
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
#pragma HLS INTERFACE s_axilite port=mult_m
#pragma HLS INTERFACE s_axilite port=mult_s
#pragma HLS INTERFACE s_axilite port=return
    if (!e2t_shape_ok(n, ci, h, wd, co, k, stride, pad) || mult_m < 0 || mult_s < 0 || mult_s > 62)
        return E2T_ERR_SHAPE;
    if (!e2t_samples_ok(samples, n_samples, n)) return E2T_ERR_SAMPLE;

    const int kk = k * k;
    const int ho = e2t_out_dim(h, k, stride, pad), wo = e2t_out_dim(wd, k, stride, pad);
    int ovf = 0;

    int8_t wt[E2T_MAX_DIM * E2T_MAX_K * E2T_MAX_K][TCI];   // [o*kk + tap][c]
#pragma HLS ARRAY_PARTITION variable=wt complete dim=2
    int64_t acc[E2T_MAX_DIM][TCI];
#pragma HLS ARRAY_PARTITION variable=acc complete dim=2
    int16_t gbuf[2][TCO][E2T_MAX_DIM];                     // ping-pong g_y rows
#pragma HLS ARRAY_PARTITION variable=gbuf complete dim=2
    Step steps[(E2T_MAX_DIM / TCO) * E2T_MAX_K];
    int16_t obuf[TCI][E2T_MAX_DIM];                        // requantised rows, written in bursts
#pragma HLS ARRAY_PARTITION variable=obuf complete dim=1

    for (int c0 = 0; c0 < ci; c0 += TCI) {
        const int tci = ci - c0 < TCI ? ci - c0 : TCI;
        // Weight tile, once per call: every listed sample reuses it.
        for (int o = 0; o < co; o++)                     // one burst of tci*kk weights per filter
            for (int r = 0; r < TCI * kk; r++) {
#pragma HLS PIPELINE II=1
                const int c = r / kk, tap = r % kk;
                wt[o * kk + tap][c] = c < tci ? w[((int64_t)o * ci + c0 + c) * kk + tap] : 0;
            }
        for (int si = 0; si < n_samples; si++) {
            const int s = samples[si];
            const int16_t *gs = g_y + (int64_t)s * co * ho * wo;
            int16_t *xs = g_x + (int64_t)s * ci * h * wd;
            for (int iy = 0; iy < h; iy++) {
                for (int ix = 0; ix < wd; ix++) {
#pragma HLS PIPELINE II=1
                    for (int c = 0; c < TCI; c++) acc[ix][c] = 0;
                }
                // The steps of this row; the next step's rows load during this one's MACs.
                int ns = 0;
                for (int o0 = 0; o0 < co; o0 += TCO)
                    for (int ky = 0; ky < k; ky++) {
                        const int ty = iy + pad - ky;             // = oy * stride for a tap that reaches iy
                        if (ty >= 0 && ty % stride == 0 && ty / stride < ho) steps[ns++] = Step{o0, ky, ty / stride};
                    }
                if (ns) load_rows(gbuf[0], gs, co, ho, wo, steps[0]);
                for (int j = 0; j < ns; j++) {
                    if (j + 1 < ns) load_rows(gbuf[(j + 1) & 1], gs, co, ho, wo, steps[j + 1]);
                    mac_rows(acc, gbuf[j & 1], wt, k, wd, wo, stride, pad, steps[j]);
                }
                // TILE_CI requantisers in parallel, then one burst per g_x row.
                for (int ix = 0; ix < wd; ix++) {
#pragma HLS PIPELINE II=1
                    for (int c = 0; c < TCI; c++)
                        obuf[c][ix] = (int16_t)e2t_requant(acc[ix][c], mult_m, mult_s, -32768, 32767, &ovf);
                }
                for (int c = 0; c < tci; c++) {
                    int16_t *dst = xs + ((int64_t)(c0 + c) * h + iy) * wd;
                    for (int ix = 0; ix < wd; ix++) {
#pragma HLS PIPELINE II=1
                        dst[ix] = obuf[c][ix];
                    }
                }
            }
        }
    }
    return ovf ? E2T_ERR_OVERFLOW : E2T_OK;
}
