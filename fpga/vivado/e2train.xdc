# e2train has no PL pins: the kernels talk to the PS only (GP0, HP0-2, IRQ_F2P), and DDR
# and MIO are fixed PS pins set by the board preset. Only bitstream options here.
set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]
