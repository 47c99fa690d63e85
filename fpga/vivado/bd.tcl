# Block design: Zynq PS7 (board preset) + the e2train HLS IP, e2t_engine (one IP, one
# training engine; its op argument picks the pass).
#   control: M_AXI_GP0 -> AXI interconnect -> the IP's s_axi_control (AXI-Lite)
#   data:    each of the IP's m_axi bundles -> its own HP port to DDR
#            (m_axi_gx -> S_AXI_HP0, m_axi_gg -> S_AXI_HP1, m_axi_gw -> S_AXI_HP2,
#             m_axi_gy -> S_AXI_HP3: kernel_iface.M_AXI_BUNDLES)
#   irq:     the IP's interrupt pin -> IRQ_F2P
#   clock:   FCLK_CLK0 at 100 MHz (the IP's target, core/perfmodel.py CLOCK_HZ)
# Sourced by build.tcl with $board_part set and build/fpga/kernels.tcl (from kernel_iface)
# defining e2t_kernels {name instance vlnv base_addr}, e2t_hp_ports (m_axi pin -> HP port)
# and e2t_addr_range.

create_bd_design e2train

set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 ps7]
if {$board_part ne ""} {
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
        -config {make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"} $ps
}
set_property -dict [list \
    CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {100} \
    CONFIG.PCW_USE_M_AXI_GP0 {1} \
    CONFIG.PCW_USE_S_AXI_HP0 {1} CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {64} \
    CONFIG.PCW_USE_S_AXI_HP1 {1} CONFIG.PCW_S_AXI_HP1_DATA_WIDTH {64} \
    CONFIG.PCW_USE_S_AXI_HP2 {1} CONFIG.PCW_S_AXI_HP2_DATA_WIDTH {64} \
    CONFIG.PCW_USE_S_AXI_HP3 {1} CONFIG.PCW_S_AXI_HP3_DATA_WIDTH {64} \
    CONFIG.PCW_USE_FABRIC_INTERRUPT {1} CONFIG.PCW_IRQ_F2P_INTR {1} \
] $ps

if {[llength $e2t_kernels] != 1} {
    error "the block design takes one e2train IP (e2t_engine); build/fpga/kernels.tcl lists [llength $e2t_kernels]"
}
foreach k $e2t_kernels {
    lassign $k name inst vlnv base
    if {[llength [get_ipdefs -all $vlnv]] == 0} {
        error "IP $vlnv is not in the IP catalog: run `make hls-synth` (hls/scripts/run_hls.sh all export) first"
    }
    set cell [create_bd_cell -type ip -vlnv $vlnv $inst]
    # control from the ARM over GP0
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
        -config [list Master /ps7/M_AXI_GP0 Clk_master {/ps7/FCLK_CLK0 (100 MHz)} \
                      Clk_slave {/ps7/FCLK_CLK0 (100 MHz)} Clk_xbar {/ps7/FCLK_CLK0 (100 MHz)} \
                      intc_ip {Auto} master_apm {0}] \
        [get_bd_intf_pins $inst/s_axi_control]
    # every m_axi bundle of the IP to its own HP port
    foreach m [get_bd_intf_pins -of_objects $cell -filter {MODE == Master}] {
        set pin [lindex [split $m /] end]
        if {![dict exists $e2t_hp_ports $pin]} {
            error "$inst has an m_axi bundle $pin that kernel_iface.M_AXI_BUNDLES does not place on an HP port"
        }
        set hp [dict get $e2t_hp_ports $pin]
        apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
            -config [list Master $m Slave /ps7/$hp Clk_master {/ps7/FCLK_CLK0 (100 MHz)} \
                          Clk_slave {/ps7/FCLK_CLK0 (100 MHz)} Clk_xbar {/ps7/FCLK_CLK0 (100 MHz)} \
                          intc_ip {Auto} master_apm {0}] \
            [get_bd_intf_pins ps7/$hp]
    }
    connect_bd_net [get_bd_pins $inst/interrupt] [get_bd_pins ps7/IRQ_F2P]
}

# The control window at the address the driver uses (kernel_iface.BASE_ADDRS)
foreach k $e2t_kernels {
    lassign $k name inst vlnv base
    set seg [get_bd_addr_segs $inst/s_axi_control/Reg]
    assign_bd_address -target_address_space /ps7/Data -offset $base -range $e2t_addr_range $seg
}
assign_bd_address            ;# the IP's m_axi address spaces onto DDR through the HP ports
validate_bd_design
save_bd_design
