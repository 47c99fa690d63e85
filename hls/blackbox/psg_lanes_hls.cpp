// C model of the RTL blackbox psg_lanes_hls (fpga/rtl/psg_lanes_hls.v): one round of the
// conv_bwd_weight_psg lane array per call. Vitis HLS uses it for C simulation and replaces
// calls to it with the RTL at synthesis (hls/blackbox/psg_lanes.json). The arithmetic lives
// in psg_lanes.h (psg::lanes_round).
#include "../include/psg_lanes.h"

void psg_lanes_hls(psg::stream<psg::LanesHead>& head, psg::stream<psg::LanesBeat>& in,
                   psg::stream<psg::LanesOut>& out, bool x_unsigned, uint16_t n_active, bool msb_en,
                   bool exact_en) {
    psg::lanes_round(head, in, out, x_unsigned, n_active, msb_en, exact_en);
}
