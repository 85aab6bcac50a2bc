"""The C target: per-op emitters (:mod:`.emit`), file assembly and memory layout (:mod:`.codegen`), and the
standalone export (:mod:`.export`)."""
