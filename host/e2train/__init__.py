"""e2train: on-device, energy-efficient CNN training (E2-Train) for Xilinx Zynq-7000 boards."""
__version__ = "0.1.0"
