// C model of the RTL blackbox psg_engine_hls (fpga/rtl/psg_engine_hls.v): one tile per call.
// Vitis HLS uses it for C simulation and replaces calls to it with the RTL at synthesis
// (hls/blackbox/psg_engine.json). The arithmetic lives in psg_engine.h.
#include "../include/psg_engine.h"

void psg_engine_hls(psg::stream<psg::InBeat>& in, psg::stream<psg::OutBeat>& out, uint8_t mode,
                    bool x_unsigned, uint32_t corr_en, uint32_t beta_q, uint64_t gmsb_absmax) {
    psg::engine(in, out, mode, x_unsigned, corr_en, beta_q, gmsb_absmax);
}

