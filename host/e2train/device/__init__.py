"""Board side (numpy + pynq only): PYNQ driver, on-device trainer, board agent, simulated device."""
