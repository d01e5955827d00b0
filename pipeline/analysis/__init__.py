"""Why a network trains as it does: gradient flow and the loss landscape (the analyze stage)."""
