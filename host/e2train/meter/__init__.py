"""Power-meter drivers on pyserial, their emulators, and the energy recorder."""
