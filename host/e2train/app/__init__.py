"""The command-line application: the `e2train` commands and the runs they drive (demo, reproduce,
reports). It imports the packages; no package imports it."""
