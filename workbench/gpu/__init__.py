"""The GPU proof: its driver (proof.sh), the wheel installer, the health probe and the report."""
