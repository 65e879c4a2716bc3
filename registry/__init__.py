"""idres registry: the control plane (operators, prefixes, writes, audit)."""
