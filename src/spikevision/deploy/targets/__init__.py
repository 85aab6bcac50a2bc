"""Stage 3 of the deploy pipeline: targets that emit a lowered program (C, the native runtime, Cortex-M) or
export the folded model (NIR)."""
