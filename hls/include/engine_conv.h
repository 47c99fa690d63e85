// engine_conv.h -- the convolution passes laid onto the training engine (train_engine.h), as
// the kernels' shell will feed it: host/e2train/core/engine_map.py describes the same layout
// (rows, columns, beats) and counts its cycles; this is its C form.
//
//   conv_fwd_acc: rows = output channels (their int8 weights), columns = pairs of output
//   positions (their x codes packed two per 16-bit column), beats = (ci, ky, kx). The
//   engine's acc_lo / acc_hi are the int32 accumulators of positions 2c and 2c+1.
//   conv_bwd_data_acc: rows = input channels (int8 weights), columns = input positions of one
//   phase ((iy + pad) mod stride, (ix + pad) mod stride), beats = (co, the phase's ky, kx),
//   column operand g_y at the output position the tap reaches (0 outside). P = the 48-bit
//   accumulator of g_x.
//   wgrad_terms: rows = output channels (int16 g_y), columns = (ci, ky, kx), beats = a chunk
//   of output positions (n, oy, ox); P = sum x*g (exact), acc_lo = G_msb (the predictor, on
//   the same operands: beta = 0's shadow), summed over the chunks.
//
// The engine's read-out is one call behind (a call emits the previous call's rows), so the
// loop keeps the previous call's placement and ends with a flush (mode 3).
#ifndef E2TRAIN_ENGINE_CONV_H
#define E2TRAIN_ENGINE_CONV_H

#include <algorithm>
#include <cstdint>
#include <vector>

#include "train_engine.h"

namespace eng {

struct ConvDims {
    int n, ci, h, w, co, k, stride, pad;
    int ho() const { return (h + 2 * pad - k) / stride + 1; }
    int wo() const { return (w + 2 * pad - k) / stride + 1; }
};

// The flush call that ends each pass: no cells, no beats, mode 3; it emits the last call's rows.
inline void flush(psg::stream<Head>& head, psg::stream<Beat>& in, psg::stream<Row>& out, bool x_unsigned) {
    Head h = {};
    head.write(h);
    train_engine_hls(head, in, out, 3, x_unsigned, false, false, false, false, 0, 0, true);
}

// acc[n][co][ho][wo] = sum over (ci, ky, kx) of w * x (zero padding), through the engine.
// x: n*ci*h*w codes (uint8, or int8 bytes when !x_unsigned); w: co*ci*k*k int8.
inline void conv_fwd_acc(const uint8_t* x, const int8_t* wt, const ConvDims& d, bool x_unsigned, int64_t* acc) {
    const int ho = d.ho(), wo = d.wo(), npos = d.n * ho * wo, taps = d.ci * d.k * d.k;
    psg::stream<Head> head;
    psg::stream<Beat> in;
    psg::stream<Row> out;
    auto x_at = [&](int p, int j) -> uint8_t {            // x of output position p at tap j
        if (p >= npos) return 0;
        const int s = p / (ho * wo), oy = (p / wo) % ho, ox = p % wo;
        const int c = j / (d.k * d.k), ky = (j / d.k) % d.k, kx = j % d.k;
        const int iy = oy * d.stride + ky - d.pad, ix = ox * d.stride + kx - d.pad;
        if (iy < 0 || iy >= d.h || ix < 0 || ix >= d.w) return 0;
        return x[((int64_t(s) * d.ci + c) * d.h + iy) * d.w + ix];
    };
    auto place = [&](int co0, int p0) {                  // the rows of the call at (co0, p0)
        for (int r = 0; r < kRows; ++r) {
            const Row row = out.read();
            const int o = co0 + r;
            for (int c = 0; c < kCols; ++c) {
                for (int half = 0; half < 2; ++half) {
                    const int p = p0 + 2 * c + half;
                    if (o >= d.co || p >= npos) continue;
                    const int s = p / (ho * wo), oy = (p / wo) % ho, ox = p % wo;
                    acc[((int64_t(s) * d.co + o) * ho + oy) * wo + ox] = half ? row.hi[c] : row.lo[c];
                }
            }
        }
    };
    int prev_co = -1, prev_p = -1;
    for (int co0 = 0; co0 < d.co; co0 += kRows) {
        for (int p0 = 0; p0 < npos; p0 += 2 * kCols) {
            Head h;
            for (int r = 0; r < kRows; ++r)
                for (int c = 0; c < kCols; ++c) h.cell_en[r * kCols + c] = co0 + r < d.co && p0 + 2 * c < npos;
            head.write(h);
            for (int j = 0; j < taps; ++j) {
                Beat b = {};
                const int c_ = j / (d.k * d.k), ky = (j / d.k) % d.k, kx = j % d.k;
                for (int r = 0; r < kRows; ++r)
                    b.row[r] = co0 + r < d.co ? int16_t(uint8_t(wt[((co0 + r) * d.ci + c_) * d.k * d.k + ky * d.k + kx])) : 0;
                for (int c = 0; c < kCols; ++c)
                    b.col[c] = int16_t(uint16_t(x_at(p0 + 2 * c, j)) | uint16_t(x_at(p0 + 2 * c + 1, j)) << 8);
                b.last = j == taps - 1;
                in.write(b);
            }
            train_engine_hls(head, in, out, 0, x_unsigned, true, false, true, true, 0, 0, prev_co >= 0);
            if (prev_co >= 0) place(prev_co, prev_p);
            prev_co = co0;
            prev_p = p0;
        }
    }
    flush(head, in, out, x_unsigned);
    place(prev_co, prev_p);
}

// g_x accumulators acc[n][ci][h][w] through the engine (gather form, by phase).
inline void conv_bwd_data_acc(const int16_t* gy, const int8_t* wt, const ConvDims& d, int64_t* acc) {
    const int ho = d.ho(), wo = d.wo(), s = d.stride, kk = d.k * d.k;
    psg::stream<Head> head;
    psg::stream<Beat> in;
    psg::stream<Row> out;
    struct Pos { int n, iy, ix; };
    struct Tap { int o, ky, kx; };
    std::vector<Pos> prev_pos;
    int prev_ci = -1;
    auto place = [&]() {
        for (int r = 0; r < kRows; ++r) {
            const Row row = out.read();
            for (int c = 0; c < kCols && c < int(prev_pos.size()); ++c)
                if (prev_ci + r < d.ci)
                    acc[((int64_t(prev_pos[c].n) * d.ci + prev_ci + r) * d.h + prev_pos[c].iy) * d.w + prev_pos[c].ix] =
                        row.p[c];
        }
    };
    for (int py = 0; py < s; ++py) {
        for (int px = 0; px < s; ++px) {
            std::vector<Pos> pos;
            std::vector<Tap> taps;
            for (int b = 0; b < d.n; ++b)
                for (int iy = 0; iy < d.h; ++iy)
                    for (int ix = 0; ix < d.w; ++ix)
                        if ((iy + d.pad) % s == py && (ix + d.pad) % s == px) pos.push_back({b, iy, ix});
            for (int o = 0; o < d.co; ++o)
                for (int ky = 0; ky < d.k; ++ky)
                    for (int kx = 0; kx < d.k; ++kx)
                        if (ky % s == py && kx % s == px) taps.push_back({o, ky, kx});
            if (pos.empty() || taps.empty()) continue;
            for (int ci0 = 0; ci0 < d.ci; ci0 += kRows) {
                for (size_t q0 = 0; q0 < pos.size(); q0 += kCols) {
                    const std::vector<Pos> tile(pos.begin() + q0, pos.begin() + std::min(pos.size(), q0 + kCols));
                    Head h;
                    for (int r = 0; r < kRows; ++r)
                        for (int c = 0; c < kCols; ++c) h.cell_en[r * kCols + c] = ci0 + r < d.ci && c < int(tile.size());
                    head.write(h);
                    for (size_t t = 0; t < taps.size(); ++t) {
                        Beat b = {};
                        const Tap& tp = taps[t];
                        for (int r = 0; r < kRows; ++r)
                            b.row[r] = ci0 + r < d.ci ? int16_t(uint8_t(wt[((tp.o * d.ci) + ci0 + r) * kk + tp.ky * d.k + tp.kx])) : 0;
                        for (int c = 0; c < int(tile.size()); ++c) {
                            const int oy = tile[c].iy + d.pad - tp.ky, ox = tile[c].ix + d.pad - tp.kx;
                            if (oy % s || ox % s || oy < 0 || ox < 0 || oy / s >= ho || ox / s >= wo) continue;
                            b.col[c] = gy[((int64_t(tile[c].n) * d.co + tp.o) * ho + oy / s) * wo + ox / s];
                        }
                        b.last = t + 1 == taps.size();
                        in.write(b);
                    }
                    train_engine_hls(head, in, out, 1, false, true, false, true, true, 0, 0, prev_ci >= 0);
                    if (prev_ci >= 0) place();
                    prev_ci = ci0;
                    prev_pos = tile;
                }
            }
        }
    }
    flush(head, in, out, false);
    place();
}

// (G_msb, G) per weight [co][ci][k][k] through the engine, the predictor shadowing the exact
// pass, in engine_map's chunked sweep: per chunk of `chunk` positions (outer: the shell loads
// it into BRAM once), one call per block of rows x cols weights over the chunk, the results
// added into the partial sums (here g_msb / g_exact) as the shell adds them in BRAM. (The
// weight groups of engine_map only reorder these calls; the sums do not depend on it.)
constexpr int kWgradChunk = 256;   // engine_map.WGRAD_CHUNK

inline void wgrad_terms(const uint8_t* x, const int16_t* gy, const ConvDims& d, bool x_unsigned, int64_t* g_msb,
                        int64_t* g_exact, int chunk = kWgradChunk) {
    const int ho = d.ho(), wo = d.wo(), npos = d.n * ho * wo, taps = d.ci * d.k * d.k;
    psg::stream<Head> head;
    psg::stream<Beat> in;
    psg::stream<Row> out;
    std::fill(g_msb, g_msb + int64_t(d.co) * taps, 0);
    std::fill(g_exact, g_exact + int64_t(d.co) * taps, 0);
    int prev_co = -1, prev_j = -1;
    auto place = [&]() {
        for (int r = 0; r < kRows; ++r) {
            const Row row = out.read();
            for (int c = 0; c < kCols; ++c)
                if (prev_co + r < d.co && prev_j + c < taps) {
                    g_exact[int64_t(prev_co + r) * taps + prev_j + c] += row.p[c];
                    g_msb[int64_t(prev_co + r) * taps + prev_j + c] += row.lo[c];
                }
        }
    };
    for (int p0 = 0; p0 < npos; p0 += chunk) {
        const int p1 = std::min(npos, p0 + chunk);
        for (int co0 = 0; co0 < d.co; co0 += kRows) {
            for (int j0 = 0; j0 < taps; j0 += kCols) {
                const int nr = std::min(kRows, d.co - co0), nc = std::min(kCols, taps - j0);
                Head h;
                for (int r = 0; r < kRows; ++r)
                    for (int c = 0; c < kCols; ++c) h.cell_en[r * kCols + c] = r < nr && c < nc;
                head.write(h);
                for (int p = p0; p < p1; ++p) {
                    Beat b = {};
                    const int sm = p / (ho * wo), oy = (p / wo) % ho, ox = p % wo;
                    for (int r = 0; r < nr; ++r)
                        b.row[r] = b.prow[r] = gy[((int64_t(sm) * d.co + co0 + r) * ho + oy) * wo + ox];
                    for (int c = 0; c < nc; ++c) {
                        const int j = j0 + c, ci = j / (d.k * d.k), ky = (j / d.k) % d.k, kx = j % d.k;
                        const int iy = oy * d.stride + ky - d.pad, ix = ox * d.stride + kx - d.pad;
                        const uint8_t v = (iy < 0 || iy >= d.h || ix < 0 || ix >= d.w) ? 0
                                          : x[((int64_t(sm) * d.ci + ci) * d.h + iy) * d.w + ix];
                        b.col[c] = v;
                        b.pcol[c] = v;
                    }
                    b.last = p == p1 - 1;
                    in.write(b);
                }
                train_engine_hls(head, in, out, 2, x_unsigned, true, true, true, true, uint8_t(nr), uint8_t(nc),
                                 prev_co >= 0);
                if (prev_co >= 0) place();
                prev_co = co0;
                prev_j = j0;
            }
        }
    }
    flush(head, in, out, x_unsigned);
    place();
}

}  // namespace eng

#endif  // E2TRAIN_ENGINE_CONV_H
