"""The seeded simulated shop and carrier: the default run and the simulator backtest."""
