"""The stacks bench/compare.py measures jobstack against: one module each, run as a process of its own."""
