"""Runner health: doctor (can this host validate?) and clean (what rocmci may remove)."""
