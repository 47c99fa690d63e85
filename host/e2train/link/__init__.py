"""The link between host and board, both ends: the JSON-lines protocol (numpy/stdlib only, run on
the board by the agent and on the host by the client), the host's client and the board package
sent through it."""
