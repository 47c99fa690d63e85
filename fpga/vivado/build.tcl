# Build the e2train bitstream for one board:
#   vivado -mode batch -source fpga/vivado/build.tcl -tclargs <board> <ip_repo> <out_dir>
# Run from the repository root (`make bitstream BOARD=...` does). Writes <out_dir>/e2train.bit
# and e2train.hwh (the hardware handoff pynq reads), plus the timing and utilisation reports.
set board   [lindex $argv 0]
set ip_repo [lindex $argv 1]
set out_dir [lindex $argv 2]
set here [file dirname [info script]]
source $here/boards.tcl
lassign [e2t_board $board] part board_part
source build/fpga/kernels.tcl

set proj_dir build/fpga/$board/proj
create_project e2train $proj_dir -part $part -force
if {[llength [get_board_parts -quiet $board_part]] == 0} {
    error "Vivado has no board files for $board_part: install them (see fpga/vivado/boards.tcl) and rerun"
}
set_property board_part $board_part [current_project]
set_property ip_repo_paths [list $ip_repo] [current_project]
update_ip_catalog

source $here/bd.tcl

set bd_file [get_files e2train.bd]
generate_target all $bd_file
make_wrapper -files $bd_file -top
add_files -norecurse [glob $proj_dir/e2train.gen/sources_1/bd/e2train/hdl/e2train_wrapper.v]
set_property top e2train_wrapper [current_fileset]
add_files -fileset constrs_1 -norecurse $here/e2train.xdc

launch_runs impl_1 -to_step write_bitstream -jobs 4
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    error "implementation did not complete: see $proj_dir/e2train.runs/impl_1/runme.log"
}
open_run impl_1
file mkdir $out_dir
report_timing_summary -file $out_dir/timing_summary.rpt
report_utilization -file $out_dir/utilization.rpt
# the bitstream only counts if timing closed at 100 MHz
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
if {$wns < 0} {
    error "timing not met at 100 MHz (WNS $wns ns): see $out_dir/timing_summary.rpt"
}
file copy -force $proj_dir/e2train.runs/impl_1/e2train_wrapper.bit $out_dir/e2train.bit
file copy -force $proj_dir/e2train.gen/sources_1/bd/e2train/hw_handoff/e2train.hwh $out_dir/e2train.hwh
puts "e2train bitstream for $board: $out_dir/e2train.bit (WNS $wns ns)"
