// C model of the RTL blackbox train_engine_hls (fpga/rtl/train_engine_hls.v): the engine's
// state lives here, as the RTL instance's registers do; the arithmetic is eng::call in
// train_engine.h.
#include "../include/train_engine.h"

void train_engine_hls(psg::stream<eng::Head>& head, psg::stream<eng::Beat>& in, psg::stream<eng::Row>& out,
                      uint8_t mode, bool x_unsigned, bool exact_en, bool pred_en, bool clr_dsp, bool clr_fab,
                      uint8_t pred_rows, uint8_t pred_cols, bool emit) {
    static thread_local eng::State state;   // one engine per thread of the C simulation
    eng::call(state, head, in, out, mode, x_unsigned, exact_en, pred_en, clr_dsp, clr_fab, pred_rows, pred_cols, emit);
}
