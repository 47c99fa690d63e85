# Boards e2train builds for: FPGA part and Vivado board part (for the PS7 preset: DDR, MIO,
# clocks). host/e2train/device/manifest.py holds the same table.
# The PYNQ-Z1/Z2 board files are not shipped with Vivado: install them from the board
# vendors (Digilent vivado-boards, TUL PYNQ-Z2 board files) into
# <Vivado>/data/boards/board_files or set_param board.repoPaths.
proc e2t_board {board} {
    switch -- $board {
        zedboard { return [list xc7z020clg484-1 avnet.com:zedboard:part0:1.4] }
        pynq-z1  { return [list xc7z020clg400-1 www.digilentinc.com:pynq-z1:part0:1.0] }
        pynq-z2  { return [list xc7z020clg400-1 tul.com.tw:pynq-z2:part0:1.0] }
        default  { error "unknown board '$board' (expected zedboard, pynq-z1 or pynq-z2)" }
    }
}
