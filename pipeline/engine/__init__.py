"""The engine: block tasks of a pass (:mod:`pipeline.engine.passes`) and where they run
(:mod:`pipeline.engine.runner`). It knows blocks, their order and a chunk sink, not the
database."""
