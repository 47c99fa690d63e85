// Test driver of the passes of hls/include/engine_conv.h: reads a shape and its codes on stdin,
// prints the forward accumulators, the input-gradient accumulators, then G_msb and G of
// every weight. test_engine_cmodel.py compares them with numpy / e2train.core.golden.
//   n ci h w co k stride pad x_unsigned chunk (weight-gradient positions per call), then n*ci*h*w x codes (0..255), co*ci*k*k weights,
//   n*co*ho*wo g_y codes
#include <cstdio>
#include <iostream>
#include <vector>

#include "engine_conv.h"

int main() {
    eng::ConvDims d;
    int xu, chunk;
    if (!(std::cin >> d.n >> d.ci >> d.h >> d.w >> d.co >> d.k >> d.stride >> d.pad >> xu >> chunk) || chunk < 1)
        return 2;
    std::vector<uint8_t> x(size_t(d.n) * d.ci * d.h * d.w);
    std::vector<int8_t> w(size_t(d.co) * d.ci * d.k * d.k);
    for (auto& v : x) { int t; std::cin >> t; v = uint8_t(t); }
    for (auto& v : w) { int t; std::cin >> t; v = int8_t(t); }
    std::vector<int16_t> g(size_t(d.n) * d.co * d.ho() * d.wo());
    for (auto& v : g) { int t; std::cin >> t; v = int16_t(t); }
    std::vector<int64_t> acc(size_t(d.n) * d.co * d.ho() * d.wo(), -1);
    eng::conv_fwd_acc(x.data(), w.data(), d, xu != 0, acc.data());
    std::vector<int64_t> gx(size_t(d.n) * d.ci * d.h * d.w, -1);
    eng::conv_bwd_data_acc(g.data(), w.data(), d, gx.data());
    std::vector<int64_t> gm(w.size(), -1), ge(w.size(), -1);
    eng::wgrad_terms(x.data(), g.data(), d, xu != 0, gm.data(), ge.data(), chunk);
    for (const auto* v : {&acc, &gx, &gm, &ge})
        for (auto t : *v) std::printf("%lld\n", (long long)t);
    return 0;
}
