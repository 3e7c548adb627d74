//! The bundle engine: PEM text in, validated, deduplicated, hashed bundle out. Pure, no I/O.
