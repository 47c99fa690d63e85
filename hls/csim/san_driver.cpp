// Standalone test driver for the ASan+UBSan build of the kernels.
//
// Usage: e2t_san_driver CASE_DIR...   Each CASE_DIR (written by tests/kernels) holds
//   args.txt      "name value" lines: kernel, n, ci, h, wd, co, k, stride, pad, ... scalars
//   <array>.bin   raw little-endian arrays: inputs, the output's prior contents, expected
// Buffers are heap-allocated at their exact sizes, so any out-of-bounds access is an ASan
// report; sanitizer reports abort (-fno-sanitize-recover). A result that differs from the
// expected bytes exits 1. Prints one line per case.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "e2t_block.h"
#include "e2t_kernels.h"

namespace {

using Bytes = std::vector<unsigned char>;

std::map<std::string, long long> read_args(const std::string &dir) {
    std::map<std::string, long long> a;
    FILE *f = std::fopen((dir + "/args.txt").c_str(), "r");
    if (!f) { std::fprintf(stderr, "%s: cannot open args.txt\n", dir.c_str()); std::exit(2); }
    char key[64];
    long long v;
    char kname[64] = {0};
    while (std::fscanf(f, "%63s", key) == 1) {
        if (std::strcmp(key, "kernel") == 0) {
            if (std::fscanf(f, "%63s", kname) != 1) std::exit(2);
            a["kernel_fwd"] = std::strcmp(kname, "conv_fwd") == 0;
            a["kernel_bwd_data"] = std::strcmp(kname, "conv_bwd_data") == 0;
            a["kernel_wgrad"] = std::strcmp(kname, "conv_bwd_weight_psg") == 0;
            a["kernel_bn_act"] = std::strcmp(kname, "bn_act") == 0;
            a["kernel_bn_reduce"] = std::strcmp(kname, "bn_bwd_reduce") == 0;
            a["kernel_bn_apply"] = std::strcmp(kname, "bn_bwd_apply") == 0;
            continue;
        }
        if (std::fscanf(f, "%lld", &v) != 1) { std::fprintf(stderr, "%s: bad value for %s\n", dir.c_str(), key); std::exit(2); }
        a[key] = v;
    }
    std::fclose(f);
    return a;
}

// The whole file in a heap buffer of exactly its size (at least 1 byte, so that an empty
// array still has a valid pointer; the kernel must not read it).
Bytes *read_bin(const std::string &dir, const char *name) {
    std::string p = dir + "/" + name + ".bin";
    FILE *f = std::fopen(p.c_str(), "rb");
    if (!f) { std::fprintf(stderr, "%s: missing\n", p.c_str()); std::exit(2); }
    std::fseek(f, 0, SEEK_END);
    long len = std::ftell(f);
    std::fseek(f, 0, SEEK_SET);
    Bytes *b = new Bytes(len);
    if (len && std::fread(b->data(), 1, len, f) != (size_t)len) std::exit(2);
    std::fclose(f);
    return b;
}

unsigned char *ptr(Bytes *b) { return b->empty() ? nullptr : b->data(); }

int compare(const std::string &dir, const char *what, const Bytes &got, const Bytes &want) {
    if (got.size() != want.size() || std::memcmp(got.data(), want.data(), got.size()) != 0) {
        std::printf("%s: MISMATCH in %s\n", dir.c_str(), what);
        return 1;
    }
    return 0;
}

int run_case(const std::string &dir) {
    auto a = read_args(dir);
    auto g = [&](const char *k) { return (int)a.at(k); };
    int bad = 0, rc = -1;
    if (a["kernel_fwd"]) {
        Bytes *x = read_bin(dir, "x"), *w = read_bin(dir, "w"), *bias = read_bin(dir, "bias");
        Bytes *s = read_bin(dir, "samples"), *y = read_bin(dir, "y_in"), *want = read_bin(dir, "y_expect");
        const int flags = a.count("b_flags") ? (int)a["b_flags"] & (E2T_BF_BN_SUMS | E2T_BF_W_SUMS) : 0;
        const bool sums = flags != 0;
        Bytes stats((flags & E2T_BF_BN_SUMS ? (size_t)g("co") * 16 : 0) + (flags & E2T_BF_W_SUMS ? (size_t)g("ci") * 8 : 0));
        rc = conv_fwd(ptr(x), (const int8_t *)ptr(w), (const int32_t *)ptr(bias), ptr(y),
                      sums ? (int64_t *)stats.data() : nullptr,
                      (const int32_t *)ptr(s), (int)(s->size() / 4), g("n"), g("ci"), g("h"), g("wd"),
                      g("co"), g("k"), g("stride"), g("pad"), g("x_unsigned"), g("has_bias"),
                      g("relu"), g("mult_m"), g("mult_s"), flags);
        bad |= compare(dir, "y", *y, *want);
        if (sums) {
            Bytes *want_st = read_bin(dir, "stats_expect");
            bad |= compare(dir, "stats", stats, *want_st);
            delete want_st;
        }
        delete x; delete w; delete bias; delete s; delete y; delete want;
    } else if (a["kernel_bwd_data"]) {
        Bytes *gy = read_bin(dir, "g_y"), *w = read_bin(dir, "w"), *s = read_bin(dir, "samples");
        Bytes *gx = read_bin(dir, "g_x_in"), *want = read_bin(dir, "g_x_expect");
        rc = conv_bwd_data((const int16_t *)ptr(gy), (const int8_t *)ptr(w), (int16_t *)ptr(gx),
                           (const int32_t *)ptr(s), (int)(s->size() / 4), g("n"), g("ci"), g("h"),
                           g("wd"), g("co"), g("k"), g("stride"), g("pad"), g("mult_m"), g("mult_s"));
        bad |= compare(dir, "g_x", *gx, *want);
        delete gy; delete w; delete s; delete gx; delete want;
    } else if (a["kernel_wgrad"]) {
        Bytes *x = read_bin(dir, "x"), *gy = read_bin(dir, "g_y"), *wm = read_bin(dir, "w_in");
        Bytes *s = read_bin(dir, "samples"), *want_w = read_bin(dir, "w_expect");
        Bytes *want_sign = read_bin(dir, "sign_expect"), *want_pred = read_bin(dir, "pred_expect");
        const size_t nw = wm->size() / 4;
        Bytes sign(nw), pred(nw), gmsb(nw * 4), stats(E2T_STAT_LEN * 8);
        rc = conv_bwd_weight_psg(ptr(x), (const int16_t *)ptr(gy), (int32_t *)ptr(wm),
                                 (int8_t *)sign.data(), pred.data(), (int32_t *)gmsb.data(),
                                 (int64_t *)stats.data(), (const int32_t *)ptr(s), (int)(s->size() / 4),
                                 g("n"), g("ci"), g("h"), g("wd"), g("co"), g("k"), g("stride"),
                                 g("pad"), g("x_unsigned"), g("beta_q"), g("lr_q"), g("wd_q"));
        bad |= compare(dir, "w_master", *wm, *want_w);
        bad |= compare(dir, "sign", sign, *want_sign);
        bad |= compare(dir, "predicted", pred, *want_pred);
        int64_t npred;
        std::memcpy(&npred, stats.data(), 8);
        if (npred != a.at("n_predicted")) { std::printf("%s: MISMATCH in n_predicted\n", dir.c_str()); bad = 1; }
        delete x; delete gy; delete wm; delete s; delete want_w; delete want_sign; delete want_pred;
    } else if (a["kernel_bn_act"] || a["kernel_bn_reduce"] || a["kernel_bn_apply"]) {
        // The block unit: every tensor at its exact size (an absent optional one: a 0-byte file,
        // passed as nullptr), the outputs' prior contents in *_in, the golden results in *_expect.
        Bytes *y = read_bin(dir, "b_y"), *s = read_bin(dir, "samples");
        const int ns = (int)(s->size() / 4);
        if (a["kernel_bn_act"]) {
            Bytes *r = read_bin(dir, "b_r"), *coef = read_bin(dir, "b_coef"), *o = read_bin(dir, "b_o_in");
            Bytes *sums = read_bin(dir, "b_sums_in");
            rc = bn_act((const int8_t *)ptr(y), ptr(o), ptr(r), (const int64_t *)ptr(coef), (int64_t *)ptr(sums),
                        (const int32_t *)ptr(s), ns, g("n"), g("h"), g("wd"), g("co"), g("b_flags"), g("b_shift"),
                        g("b_m1"), g("r_c"), g("r_h"), g("r_w"), g("r_stride"), g("r_lo"));
            Bytes *want_o = read_bin(dir, "b_o_expect"), *want_s = read_bin(dir, "b_sums_expect");
            bad |= compare(dir, "b_o", *o, *want_o);
            bad |= compare(dir, "b_sums", *sums, *want_s);
            delete r; delete coef; delete o; delete sums; delete want_o; delete want_s;
        } else if (a["kernel_bn_reduce"]) {
            Bytes *o = read_bin(dir, "b_o"), *r = read_bin(dir, "b_r"), *ga = read_bin(dir, "b_ga");
            Bytes *gb = read_bin(dir, "b_gb"), *gm = read_bin(dir, "b_gm_in"), *sums = read_bin(dir, "b_sums_in");
            rc = bn_bwd_reduce((const int8_t *)ptr(y), ptr(o), ptr(r), (const int16_t *)ptr(ga),
                               (const int16_t *)ptr(gb), (int16_t *)ptr(gm), (int64_t *)ptr(sums),
                               (const int32_t *)ptr(s), ns, g("n"), g("h"), g("wd"), g("co"), g("b_flags"),
                               g("b_shift"), g("b_m1"), g("b_m2"), g("r_c"), g("r_h"), g("r_w"), g("r_stride"),
                               g("r_lo"), g("gb_c"), g("gb_h"), g("gb_w"), g("gb_stride"), g("gb_lo"));
            Bytes *want_g = read_bin(dir, "b_gm_expect"), *want_s = read_bin(dir, "b_sums_expect");
            bad |= compare(dir, "b_gm", *gm, *want_g);
            bad |= compare(dir, "b_sums", *sums, *want_s);
            delete o; delete r; delete ga; delete gb; delete gm; delete sums; delete want_g; delete want_s;
        } else {
            Bytes *gm = read_bin(dir, "b_gm"), *coef = read_bin(dir, "b_coef"), *gy = read_bin(dir, "b_gy_in");
            rc = bn_bwd_apply((const int8_t *)ptr(y), (const int16_t *)ptr(gm), (int16_t *)ptr(gy),
                              (const int64_t *)ptr(coef), (const int32_t *)ptr(s), ns, g("n"), g("h"), g("wd"),
                              g("co"), g("b_shift"));
            Bytes *want = read_bin(dir, "b_gy_expect");
            bad |= compare(dir, "b_gy", *gy, *want);
            delete gm; delete coef; delete gy; delete want;
        }
        delete y; delete s;
    } else {
        std::fprintf(stderr, "%s: unknown kernel\n", dir.c_str());
        return 2;
    }
    const int want_rc = a.count("status") ? (int)a["status"] : 0;
    if (rc != want_rc) { std::printf("%s: status %d, expected %d\n", dir.c_str(), rc, want_rc); bad = 1; }
    if (!bad) std::printf("%s: ok\n", dir.c_str());
    return bad;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) { std::fprintf(stderr, "usage: %s CASE_DIR...\n", argv[0]); return 2; }
    int bad = 0;
    for (int i = 1; i < argc; i++) bad |= run_case(argv[i]);
    return bad;
}
