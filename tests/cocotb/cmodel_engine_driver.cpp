// Test driver of the training engine's C model (train_engine_hls(), hls/include/train_engine.h):
// reads calls as text on stdin, writes the rows each call emits. test_engine_cmodel.py
// compares them with engine_model.py.
//   C mode x_unsigned exact_en pred_en clr_dsp clr_fab pred_rows pred_cols emit beats
//   H <kCells 0/1>
//   B <kRows row> <kCols col> <kRows prow> <kCols pcol>      (beats lines; the last one ends)
// Output per emitted row: R <kCols p> <kCols lo> <kCols hi>
#include <cstdio>
#include <iostream>

#include "train_engine.h"

int main() {
    psg::stream<eng::Head> head;
    psg::stream<eng::Beat> in;
    psg::stream<eng::Row> out;
    char tag;
    while (std::cin >> tag) {
        if (tag != 'C') return 2;
        int mode, xu, ex, pr, cd, cf, prow, pcol, emit, beats;
        std::cin >> mode >> xu >> ex >> pr >> cd >> cf >> prow >> pcol >> emit >> beats;
        eng::Head h;
        std::cin >> tag;
        for (int k = 0; k < eng::kCells; ++k) {
            int v;
            std::cin >> v;
            h.cell_en[k] = v != 0;
        }
        head.write(h);
        for (int t = 0; t < beats; ++t) {
            eng::Beat b;
            int v;
            std::cin >> tag;
            for (int r = 0; r < eng::kRows; ++r) { std::cin >> v; b.row[r] = int16_t(v); }
            for (int c = 0; c < eng::kCols; ++c) { std::cin >> v; b.col[c] = int16_t(v); }
            for (int r = 0; r < eng::kRows; ++r) { std::cin >> v; b.prow[r] = int16_t(v); }
            for (int c = 0; c < eng::kCols; ++c) { std::cin >> v; b.pcol[c] = uint8_t(v); }
            b.last = t == beats - 1;
            in.write(b);
        }
        train_engine_hls(head, in, out, uint8_t(mode), xu, ex, pr, cd, cf, uint8_t(prow), uint8_t(pcol), emit);
        if (!in.empty() || !head.empty()) return 3;
        while (!out.empty()) {
            const eng::Row row = out.read();
            std::printf("R");
            for (int c = 0; c < eng::kCols; ++c) std::printf(" %lld", (long long)row.p[c]);
            for (int c = 0; c < eng::kCols; ++c) std::printf(" %lld", (long long)row.lo[c]);
            for (int c = 0; c < eng::kCols; ++c) std::printf(" %lld", (long long)row.hi[c]);
            std::printf("\n");
        }
    }
    return 0;
}
