"""One reader per input kind, one registration each (``kinds.py``); every reader returns the
source model of ``pipeline.model`` as a :class:`pipeline.model.Contents`.

Nothing is imported here: ``pipeline.inputs.kinds`` is imported at start-up by the CLI, and
each reader module only when its kind is read.
"""
