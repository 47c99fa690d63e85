"""PyTorch reference of E2-Train: PSG layers, SLU gates, SMD, models, skipping methods, trainer."""
