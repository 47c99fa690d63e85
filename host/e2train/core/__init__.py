"""numpy-only core: the fixed-point contract, golden kernel models, performance and energy models.

Runs on the board (PYNQ, ARMv7): imports nothing but numpy and the standard library.
"""
