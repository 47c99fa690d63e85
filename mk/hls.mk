# HLS kernels: C simulation library (g++), sanitizer build, Vitis HLS synthesis.
CSIM_DIR := build/csim
# The top and its passes, the passes' C entry points (wrappers around the top, not
# synthesised) and the blackbox C model the top calls (Vitis HLS swaps in the RTL from its JSON).
HLS_SRCS := $(wildcard hls/src/*.cpp) hls/csim/pass_entry.cpp hls/blackbox/train_engine_hls.cpp
HLS_HDRS := $(wildcard hls/include/*.h)
CSIM_CXX ?= g++
# -O3 alone: the CI machine is the same kind, but a portable build is what users get.
CSIM_CXXFLAGS ?= -O3
CSIM_COMMON := -std=c++17 -Wall -Wextra -Werror -Wno-unknown-pragmas -Ihls/include -fPIC
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

.PHONY: csim hls-synth
csim: $(CSIM_DIR)/libe2t_kernels.so $(CSIM_DIR)/libe2t_kernels_san.so $(CSIM_DIR)/e2t_san_driver

$(CSIM_DIR)/libe2t_kernels.so: $(HLS_SRCS) $(HLS_HDRS)
	@mkdir -p $(CSIM_DIR)
	$(CSIM_CXX) $(CSIM_COMMON) $(CSIM_CXXFLAGS) -shared -o $@.tmp $(HLS_SRCS) && mv $@.tmp $@

# ASan+UBSan variant of the library (load it with E2TRAIN_CSIM_LIB and LD_PRELOAD=libasan).
$(CSIM_DIR)/libe2t_kernels_san.so: $(HLS_SRCS) $(HLS_HDRS)
	@mkdir -p $(CSIM_DIR)
	$(CSIM_CXX) $(CSIM_COMMON) $(SAN_FLAGS) -shared -o $@.tmp $(HLS_SRCS) && mv $@.tmp $@

# Standalone ASan+UBSan driver: runs the kernels on cases the tests write (tests/kernels).
$(CSIM_DIR)/e2t_san_driver: hls/csim/san_driver.cpp $(HLS_SRCS) $(HLS_HDRS)
	@mkdir -p $(CSIM_DIR)
	$(CSIM_CXX) $(CSIM_COMMON) $(SAN_FLAGS) -o $@.tmp hls/csim/san_driver.cpp $(HLS_SRCS) && mv $@.tmp $@

hls-synth:
	hls/scripts/run_hls.sh all

TEST_DEPS += csim
DEMO_DEPS += csim
BENCHES += bench-kernels
.PHONY: bench-kernels
bench-kernels: csim
	$(BIN)/python benchmarks/bench_kernels.py
