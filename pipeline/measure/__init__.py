"""What a network costs: parameters, MACs and FLOPs (the same everywhere), latency (per machine)."""
