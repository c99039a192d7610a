"""Prefect flows of lm-co2: orchestration only; the work is done by ``compute``."""
