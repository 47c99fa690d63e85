// Test driver of the lane array's C model (psg::lanes_round in hls/include/psg_lanes.h,
// through the blackbox function psg_lanes_hls): reads rounds as text on stdin, writes one
// result line per round. Used by tests/cocotb/test_psg_cmodel.py.
//
// in:  R <x_unsigned> <n_active> <msb_en> <exact_en> <beats>
//      <x_sel[L]> <g_sel[L]> <init_msb[L]> <init_exact[E]>       (whitespace separated)
//      then <beats> times: <x[XS]> <g[GS]>   (x as the integer code value, g as int16)
// out: O <g_msb[L]> | <g_exact[E]> | <beats> <msb_macs> <exact_macs> | <head empty> <in empty>
#include <cinttypes>
#include <cstdio>
#include <vector>

#include "psg_lanes.h"

int main() {
    unsigned xu, n_active, msb_en, exact_en;
    unsigned long beats;
    while (std::scanf(" R %u %u %u %u %lu", &xu, &n_active, &msb_en, &exact_en, &beats) == 5) {
        static psg::LanesHead h;   // large: not on the stack
        int v;
        long long w;
        for (int l = 0; l < psg::kArrayLanes; ++l) { if (std::scanf("%d", &v) != 1) return 2; h.x_sel[l] = uint8_t(v); }
        for (int l = 0; l < psg::kArrayLanes; ++l) { if (std::scanf("%d", &v) != 1) return 2; h.g_sel[l] = uint8_t(v); }
        for (int l = 0; l < psg::kArrayLanes; ++l) { if (std::scanf("%lld", &w) != 1) return 2; h.g_msb[l] = w; }
        for (int l = 0; l < psg::kArrayExact; ++l) { if (std::scanf("%lld", &w) != 1) return 2; h.g_exact[l] = w; }
        psg::stream<psg::LanesHead> head;
        psg::stream<psg::LanesBeat> in;
        psg::stream<psg::LanesOut> out;
        head.write(h);
        for (unsigned long b = 0; b < beats; ++b) {
            psg::LanesBeat beat;
            for (int i = 0; i < psg::kWindowX; ++i) { if (std::scanf("%d", &v) != 1) return 2; beat.x[i] = uint8_t(v); }
            for (int j = 0; j < psg::kWindowG; ++j) { if (std::scanf("%d", &v) != 1) return 2; beat.g[j] = int16_t(v); }
            beat.last = b + 1 == beats;
            in.write(beat);
        }
        // The work counts come from the model itself; the blackbox function must agree with it.
        psg::stream<psg::LanesHead> head2 = head;
        psg::stream<psg::LanesBeat> in2 = in;
        psg::stream<psg::LanesOut> out2;
        const psg::LanesWork work = psg::lanes_round(head2, in2, out2, xu != 0, uint16_t(n_active), msb_en != 0, exact_en != 0);
        psg_lanes_hls(head, in, out, xu != 0, uint16_t(n_active), msb_en != 0, exact_en != 0);
        const psg::LanesOut o = out.read(), o2 = out2.read();
        bool same = true;
        for (int l = 0; l < psg::kArrayLanes; ++l) same = same && o.g_msb[l] == o2.g_msb[l];
        for (int l = 0; l < psg::kArrayExact; ++l) same = same && o.g_exact[l] == o2.g_exact[l];
        std::printf("O");
        for (int l = 0; l < psg::kArrayLanes; ++l) std::printf(" %" PRId64, o.g_msb[l]);
        std::printf(" |");
        for (int l = 0; l < psg::kArrayExact; ++l) std::printf(" %" PRId64, o.g_exact[l]);
        std::printf(" | %" PRIu64 " %" PRIu64 " %" PRIu64 " | %d %d %d\n", work.beats, work.msb_macs, work.exact_macs,
                    int(head.empty()), int(in.empty()), int(same));
    }
    return 0;
}
