"""Badge definitions shipped with the bridge: one TOML file per badge, beside its SVG image."""
