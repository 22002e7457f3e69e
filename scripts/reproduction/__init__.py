"""The reproduction driver behind scripts/reproduce: one module per claim in
``parts/``, each writing its section of docs/reproduction.md as a fragment."""
