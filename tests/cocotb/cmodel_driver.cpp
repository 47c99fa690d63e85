// Test driver of the engine's C model (hls/include/psg_engine.h): reads tiles as text on
// stdin, writes one result line per tile (both the stepwise API and the stream form
// psg_engine_hls(), which must agree). Used by tests/cocotb/test_psg_cmodel.py.
//
// in:  T <beats> <mode> <x_unsigned> <corr_en> <beta_q> <gmax>   then <beats> lines of
//      x[0] g[0] x[1] g[1] ... (x as the integer code value, g as int16)
// out: R <overflow> <predicted_mask> <incomplete> <corr_macs> | g_msb... | g_exact... | sign...
//      S <same as the R line's mask and sign fields, from psg_engine_hls>
#include <cinttypes>
#include <cstdio>
#include <vector>

#include "psg_engine.h"

int main() {
    char tag[4];
    unsigned long long beats, gmax;
    unsigned mode, xu, corr_en, beta_q;
    while (std::scanf("%3s %llu %u %u %u %u %llu", tag, &beats, &mode, &xu, &corr_en, &beta_q, &gmax) == 7) {
        std::vector<psg::InBeat> tile(beats);
        for (auto& b : tile) {
            for (int l = 0; l < psg::kLanes; ++l) {
                int x, g;
                if (std::scanf("%d %d", &x, &g) != 2) return 2;
                b.x[l] = uint8_t(x);        // int8 codes arrive as -128..127: two's complement byte
                b.g[l] = int16_t(g);
            }
            b.last = false;
        }
        tile.back().last = true;
        psg::TileState t;
        psg::tile_start(t, mode ? psg::kDecide : psg::kPredict, xu != 0, corr_en);
        for (const auto& b : tile) psg::tile_push(t, b.x, b.g);
        psg::TileResult r;
        psg::tile_finish(t, beta_q, gmax, r);
        std::printf("R %d %u %u %" PRIu64 " |", int(r.overflow), r.predicted_mask, r.incomplete, t.corr_macs);
        for (int l = 0; l < psg::kLanes; ++l) std::printf(" %" PRId64, r.g_msb[l]);
        std::printf(" |");
        for (int l = 0; l < psg::kLanes; ++l) std::printf(" %" PRId64, r.g_exact[l]);
        std::printf(" |");
        for (int l = 0; l < psg::kLanes; ++l) std::printf(" %d", int(r.sign[l]));
        std::printf("\n");

        psg::stream<psg::InBeat> in;
        psg::stream<psg::OutBeat> out;
        for (const auto& b : tile) in.write(b);
        psg_engine_hls(in, out, uint8_t(mode), xu != 0, corr_en, beta_q, gmax);
        const psg::OutBeat o = out.read();
        std::printf("S %d %u %u |", int(o.overflow), o.predicted, o.incomplete);
        for (int l = 0; l < psg::kLanes; ++l) std::printf(" %" PRId64, o.g_msb[l]);
        std::printf(" |");
        for (int l = 0; l < psg::kLanes; ++l) std::printf(" %d", int(o.sign[l]));
        std::printf(" | %d %d\n", int(in.empty()), int(out.empty()));
    }
    return 0;
}
