"""``python -m registry.cli`` runs ``rcc-node``."""

from registry.cli.main import main

main()
