# E²-Train's modelled energy against its accuracy on the simulated board: five seeds of the demo's
# model, one baseline each, and SMD's energy budget at 0.67 (the demo's), 0.58 and 0.5 (about
# 4 minutes on 2 cores). A sweep, not a test: FRONTIER_ARGS adds settings
# (--setting 'NAME={"key": value}'), seeds or an --out to resume into.
.PHONY: frontier
frontier: $(STAMP) csim
	$(BIN)/e2train frontier $(FRONTIER_ARGS)
