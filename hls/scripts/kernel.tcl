# Vitis HLS flow for one kernel: C simulation, C synthesis, IP export.
#   vitis_hls -f hls/scripts/kernel.tcl -tclargs <kernel> <steps> <case dirs...>
# kernel: conv_fwd | conv_bwd_data | conv_bwd_weight_psg
# steps:  csim | csynth | export | all
# Run from the repository root (hls/scripts/run_hls.sh does). Part xc7z020clg484-1, 10 ns.
set kernel [lindex $argv 0]
set steps  [lindex $argv 1]
set cases  [lrange $argv 2 end]
set all_kernels {conv_fwd conv_bwd_data conv_bwd_weight_psg}
if {[lsearch -exact $all_kernels $kernel] < 0} {
    puts stderr "unknown kernel '$kernel' (expected one of $all_kernels)"
    exit 2
}

set cflags "-std=c++17 -Ihls/include -Wno-unknown-pragmas"
open_project -reset build/hls/$kernel
set_top $kernel
add_files hls/src/$kernel.cpp -cflags $cflags
# Every kernel computes on the training engine (train_engine_hls): its RTL replaces the C
# model (fpga/rtl/train_engine_hls.v, hls/blackbox/train_engine.json).
add_files -blackbox hls/blackbox/train_engine.json
# Testbench: the same driver as the sanitizer test, over cases from hls/csim/cases.py; the
# other kernels' sources are testbench files (they are not synthesised here).
add_files -tb hls/csim/san_driver.cpp -cflags $cflags
foreach k $all_kernels {
    if {$k ne $kernel} { add_files -tb hls/src/$k.cpp -cflags $cflags }
}

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
    export_design -format ip_catalog -vendor e2train.org -library hls -version 1.0 \
        -description "e2train $kernel" -output build/hls/ip/$kernel.zip
}
exit 0
