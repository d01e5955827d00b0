"""Transfer learning with few labels: the strategies, the source network, one source's experiment."""
