# Vitis HLS flow for the fabric's one IP, e2t_engine (the three conv passes on one training
# engine and the block unit's three ops; hls/src/e2t_engine.cpp): C simulation, C synthesis, IP export.
#   vitis_hls -f hls/scripts/kernel.tcl -tclargs <steps> <case dirs...>
# steps:  csim | csynth | export | all
# Run from the repository root (hls/scripts/run_hls.sh does). Part xc7z020clg484-1, 10 ns.
set steps  [lindex $argv 0]
set cases  [lrange $argv 1 end]
# The IP version: kernel_iface.VERSION (a test keeps the two equal; the manifest records it).
set version 2.3

set cflags "-std=c++17 -Ihls/include -Wno-unknown-pragmas"
open_project -reset build/hls/e2t_engine
set_top e2t_engine
foreach f {e2t_engine conv_fwd conv_bwd_data conv_bwd_weight_psg block_ops} {
    add_files hls/src/$f.cpp -cflags $cflags
}
# The engine's RTL replaces its C model (fpga/rtl/train_engine_hls.v, hls/blackbox/train_engine.json).
add_files -blackbox hls/blackbox/train_engine.json
# Testbench: the same driver as the sanitizer test, over cases from hls/csim/cases.py, through
# the passes' C entry points (wrappers that call the top with their op).
add_files -tb hls/csim/san_driver.cpp -cflags $cflags
add_files -tb hls/csim/pass_entry.cpp -cflags $cflags

open_solution -reset -flow_target vivado sol1
set_part xc7z020clg484-1
create_clock -period 10 -name default
config_interface -m_axi_addr64=false

if {$steps eq "csim" || $steps eq "all"} {
    csim_design -argv [join $cases " "]
}
if {$steps eq "csynth" || $steps eq "all" || $steps eq "export"} {
    csynth_design
}
if {$steps eq "export" || $steps eq "all"} {
    export_design -format ip_catalog -vendor e2train.org -library hls -version $version \
        -description "e2train training engine: conv_fwd, conv_bwd_data, conv_bwd_weight_psg, bn_act, bn_bwd_reduce, bn_bwd_apply by op" \
        -output build/hls/ip/e2t_engine.zip
}
exit 0
